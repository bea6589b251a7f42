//! The two things every nonblocking fd of the daemon needs: being made nonblocking, and being
//! written as far as it will take right now; and the close-on-exec pipes they start as.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsRawFd;

/// A pipe whose ends are close-on-exec (handed to a child only through its stdio or a dup2).
pub fn pipe() -> io::Result<(std::os::fd::OwnedFd, std::os::fd::OwnedFd)> {
    Ok(nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?)
}

/// Sets O_NONBLOCK.
pub fn set_nonblocking(fd: &impl AsRawFd) -> io::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let flags = OFlag::from_bits_truncate(fcntl(fd.as_raw_fd(), FcntlArg::F_GETFL)?);
    fcntl(fd.as_raw_fd(), FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok(())
}

/// Writes as much of `pending` as `file` takes now and removes it from `pending`. An error means the
/// other side is gone (EPIPE, EIO): nothing more can be delivered.
pub fn write_pending(file: &mut File, pending: &mut Vec<u8>) -> io::Result<()> {
    while !pending.is_empty() {
        match file.write(pending) {
            Ok(n) => {
                pending.drain(..n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
