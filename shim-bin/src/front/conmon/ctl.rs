//! conmon's ctl fifo, `<bundle>/ctl` (0660): podman writes lines `"<type> <height> <width>\n"`,
//! type 1 a terminal's new size, type 2 "reopen the log". The monitor holds it open for reading
//! and with a writer of its own for its whole life: podman opens it for writing without blocking,
//! which fails while no reader has it open, and a reader whose last writer left would see EOF on
//! every turn.

use nix::sys::stat::Mode;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The longest line kept while its end has not come.
const MAX_LINE: usize = 4096;

/// What podman asked for on the fifo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Resize { rows: u16, cols: u16 },
    ReopenLog,
}

/// The fifo, held open from both ends.
#[derive(Debug)]
pub struct CtlFifo {
    reader: File,
    _writer: File,
    partial: Vec<u8>,
    path: PathBuf,
}

impl CtlFifo {
    /// Makes `<bundle>/ctl` (replacing a stale one) and opens it.
    pub fn make(bundle: &Path) -> io::Result<CtlFifo> {
        let path = bundle.join("ctl");
        let _ = std::fs::remove_file(&path);
        nix::unistd::mkfifo(&path, Mode::from_bits_truncate(0o660))
            .map_err(|e| io::Error::other(format!("mkfifo {}: {e}", path.display())))?;
        // mkfifo's mode passes through the umask; the fifo is podman's to write to.
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o660))?;
        let reader = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NONBLOCK)
            .open(&path)?;
        let writer = std::fs::OpenOptions::new().write(true).open(&path)?;
        Ok(CtlFifo {
            reader,
            _writer: writer,
            partial: Vec::new(),
            path,
        })
    }

    pub fn raw_fd(&self) -> RawFd {
        self.reader.as_raw_fd()
    }

    /// What arrived since the last call: the complete lines, read.
    pub fn read(&mut self) -> Vec<Result<Control, String>> {
        let mut buf = [0u8; 4096];
        loop {
            match self.reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => self.partial.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
            if self.partial.len() > 16 * MAX_LINE {
                break;
            }
        }
        let mut controls = Vec::new();
        while let Some(end) = self.partial.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=end).collect();
            controls.push(parse(&String::from_utf8_lossy(&line[..end])));
        }
        if self.partial.len() > MAX_LINE {
            self.partial.clear();
            controls.push(Err(format!("a line longer than {MAX_LINE} bytes")));
        }
        controls
    }

    /// The fifo goes, with its file.
    pub fn remove(self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// One line of the fifo.
pub fn parse(line: &str) -> Result<Control, String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let number = |i: usize| -> Result<u16, String> {
        words
            .get(i)
            .and_then(|w| w.parse::<u16>().ok())
            .ok_or_else(|| format!("ctl: {line:?} is not \"<type> <height> <width>\""))
    };
    match (words.first(), words.len()) {
        (Some(&"1"), 3) => Ok(Control::Resize {
            rows: number(1)?,
            cols: number(2)?,
        }),
        (Some(&"2"), 3) => Ok(Control::ReopenLog),
        _ => Err(format!("ctl: {line:?} is not a message tether knows")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn lines_are_read_whole_and_bad_ones_are_named() {
        assert_eq!(
            parse("1 30 100"),
            Ok(Control::Resize {
                rows: 30,
                cols: 100
            })
        );
        assert_eq!(parse("2 0 0"), Ok(Control::ReopenLog));
        assert!(parse("1 30").is_err());
        assert!(parse("1 x 100").is_err());
        assert!(parse("1 70000 1").is_err());
        assert!(parse("9 1 1").is_err());
    }

    #[test]
    fn the_fifo_takes_lines_in_pieces() {
        let dir = std::env::temp_dir().join(format!("tether-ctl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut fifo = CtlFifo::make(&dir).unwrap();
        let mut podman = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(nix::libc::O_NONBLOCK)
            .open(dir.join("ctl"))
            .unwrap();
        podman.write_all(b"1 40 1").unwrap();
        assert!(fifo.read().is_empty());
        podman.write_all(b"20\n2 0 0\n").unwrap();
        assert_eq!(
            fifo.read(),
            [
                Ok(Control::Resize {
                    rows: 40,
                    cols: 120
                }),
                Ok(Control::ReopenLog)
            ]
        );
        fifo.remove();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
