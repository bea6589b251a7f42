//! The daemon's files: written whole or not at all (write to a temporary name, then rename).

use std::io::Write;
use std::path::Path;

/// Replaces `path` with `contents` atomically: readers see the old file or the new one, never half.
pub fn write_atomically(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let mut file = std::fs::File::create(&temporary)?;
    file.write_all(contents)?;
    std::fs::rename(&temporary, path)
}

/// The daemon's own diagnostics (`shim.log`): one timestamped line per event.
#[derive(Debug)]
pub struct ShimLog {
    file: Option<std::fs::File>,
}

impl ShimLog {
    /// Appends to `path`; without it, diagnostics go nowhere (the daemon must not die for them).
    pub fn open(path: &Path) -> Self {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .ok();
        ShimLog { file }
    }

    /// Writes one line.
    pub fn line(&mut self, message: impl std::fmt::Display) {
        if let Some(file) = &mut self.file {
            let _ = writeln!(file, "{} {message}", crate::time::now());
        }
    }
}
