//! Unix socket paths of any length. `sun_path` holds 108 bytes, but a state dir plus a 128-character
//! container id can be longer. A long path is reached through the parent directory's fd instead:
//! `/proc/self/fd/N/control.sock` names the same socket and always fits.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The longest path given to the kernel as it is (`sun_path` less its NUL).
const MAX_DIRECT: usize = 107;

/// A path to bind or connect to, and the directory fd that keeps it valid while it is used.
#[derive(Debug)]
pub struct SocketPath {
    path: PathBuf,
    _dir: Option<File>,
}

impl SocketPath {
    /// A usable name for `path`.
    pub fn new(path: &Path) -> io::Result<SocketPath> {
        if path.as_os_str().len() <= MAX_DIRECT {
            return Ok(SocketPath {
                path: path.to_owned(),
                _dir: None,
            });
        }
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{}: not a socket path", path.display()),
            ));
        };
        let dir = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_PATH | nix::libc::O_DIRECTORY | nix::libc::O_CLOEXEC)
            .open(parent)?;
        let short = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd())).join(name);
        if short.as_os_str().len() > MAX_DIRECT {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{}: socket name too long", path.display()),
            ));
        }
        Ok(SocketPath {
            path: short,
            _dir: Some(dir),
        })
    }

    /// The name to hand to bind(2) or connect(2).
    pub fn as_path(&self) -> &Path {
        &self.path
    }
}

/// Connects to the socket at `path`, however long the path.
pub fn connect(path: &Path) -> io::Result<std::os::unix::net::UnixStream> {
    let name = SocketPath::new(path)?;
    std::os::unix::net::UnixStream::connect(name.as_path())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_socket_deeper_than_sun_path_binds_and_connects() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("d".repeat(120));
        std::fs::create_dir(&deep).unwrap();
        let path = deep.join("control.sock");
        assert!(path.as_os_str().len() > 108);
        let name = SocketPath::new(&path).unwrap();
        let listener = std::os::unix::net::UnixListener::bind(name.as_path()).unwrap();
        assert!(path.exists(), "bound at the long path itself");
        let _client = connect(&path).unwrap();
        listener.accept().unwrap();
    }

    #[test]
    fn a_short_path_is_used_as_it_is() {
        let name = SocketPath::new(Path::new("/run/x.sock")).unwrap();
        assert_eq!(name.as_path(), Path::new("/run/x.sock"));
    }
}
