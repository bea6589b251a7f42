//! The files podman reads: the monitor's pid file and the exit file, each a decimal number with
//! no newline (podman parses the whole file as one integer), written under a temporary name and
//! renamed so no reader sees half of one; and `<bundle>/oom`, empty, made when the kernel killed
//! a process of the container for memory.

use std::io;
use std::path::Path;

/// Writes `number` to `path` whole, without a newline.
pub fn write_number(path: &Path, number: i64) -> io::Result<()> {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    std::fs::write(&temporary, number.to_string())?;
    std::fs::rename(&temporary, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&temporary);
    })
}

/// podman's OOM mark: `<bundle>/oom` (conmon 2.1.6 writes it in its working directory, which for a
/// container is not the bundle, so podman never saw it; the bundle is where podman looks).
pub struct OomMark {
    pub path: std::path::PathBuf,
}

impl crate::shim::EventSink for OomMark {
    fn publish(&mut self, _: &str, event: shim_core::Event) {
        if matches!(event, shim_core::Event::Oom) {
            let _ = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_written_whole_without_a_newline() {
        let dir = std::env::temp_dir().join(format!("tether-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let exit = dir.join("abc");
        write_number(&exit, 137).unwrap();
        write_number(&exit, -1).unwrap();
        assert_eq!(std::fs::read_to_string(&exit).unwrap(), "-1");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
