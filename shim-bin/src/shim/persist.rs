//! The daemon's files: records written whole or not at all (write to a temporary name, then
//! rename), and `tether run`'s own diagnostics, `shim.log`, bounded.

use std::io::Write;
use std::path::Path;

/// Replaces `path` with `contents` atomically: readers see the old file or the new one, never half.
pub fn write_atomically(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let written = std::fs::File::create(&temporary)
        .and_then(|mut file| file.write_all(contents))
        .and_then(|()| std::fs::rename(&temporary, path));
    if written.is_err() {
        // Half a temporary file is no use to anyone, and takes room the next try needs.
        let _ = std::fs::remove_file(&temporary);
    }
    written
}

/// The daemon's own diagnostics (`shim.log`): one timestamped line per event. Bounded: past
/// [`SHIM_LOG_MAX`] the file becomes `shim.log.1` (replacing an older one) and a new one starts,
/// so a container that runs execs for months does not fill its state dir.
#[derive(Debug)]
pub struct ShimLog {
    path: std::path::PathBuf,
    file: Option<std::fs::File>,
    size: u64,
}

/// The size at which `shim.log` is rotated.
pub const SHIM_LOG_MAX: u64 = 1 << 20;

impl ShimLog {
    /// Appends to `path`; without it, diagnostics go nowhere (the daemon must not die for them).
    pub fn open(path: &Path) -> Self {
        let file = Self::open_file(path);
        let size = file
            .as_ref()
            .and_then(|f| f.metadata().ok())
            .map_or(0, |m| m.len());
        ShimLog {
            path: path.to_owned(),
            file,
            size,
        }
    }

    fn open_file(path: &Path) -> Option<std::fs::File> {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .ok()
    }

    /// Writes one line.
    pub fn line(&mut self, message: impl std::fmt::Display) {
        if self.size >= SHIM_LOG_MAX {
            self.rotate();
        }
        if let Some(file) = &mut self.file {
            let line = format!("{} {message}\n", crate::common::time::now());
            if file.write_all(line.as_bytes()).is_ok() {
                self.size += line.len() as u64;
            }
        }
    }

    fn rotate(&mut self) {
        let mut old = self.path.as_os_str().to_owned();
        old.push(".1");
        let _ = std::fs::rename(&self.path, old);
        self.file = Self::open_file(&self.path);
        self.size = 0;
        // The daemon's stderr is this log too (a panic message, say): follow it to the new file.
        if let Some(file) = &self.file {
            let _ = nix::unistd::dup2(std::os::fd::AsRawFd::as_raw_fd(file), 2);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shim_log_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shim.log");
        let mut log = ShimLog::open(&path);
        // Keep the test's own stderr: rotation would point fd 2 at the log.
        log.size = 0;
        let line = "x".repeat(100);
        let saved = nix::unistd::dup(2).unwrap();
        for _ in 0..30_000 {
            log.line(&line);
        }
        nix::unistd::dup2(saved, 2).unwrap();
        let _ = nix::unistd::close(saved);
        let size = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
        assert!(size(&path) <= SHIM_LOG_MAX + 200);
        assert!(size(&dir.path().join("shim.log.1")) <= SHIM_LOG_MAX + 200);
        assert!(!dir.path().join("shim.log.2").exists());
    }
}
