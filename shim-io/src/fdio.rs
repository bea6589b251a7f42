//! What every nonblocking fd of the copier needs: close-on-exec pipes to start from, being made
//! nonblocking, and being written as far as it takes right now.

use std::io::{self, Write};
use std::os::fd::{AsRawFd, OwnedFd};

/// A pipe whose ends are close-on-exec (handed to a child only through its stdio or a dup2).
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?)
}

/// Sets O_NONBLOCK.
pub fn set_nonblocking(fd: &impl AsRawFd) -> io::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let flags = OFlag::from_bits_truncate(fcntl(fd.as_raw_fd(), FcntlArg::F_GETFL)?);
    fcntl(fd.as_raw_fd(), FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok(())
}

/// Writes as much of `data` as `writer` takes now (0 when it is full). An error means the other
/// side is gone (EPIPE, EIO): nothing more can be delivered.
pub fn write_some(writer: &mut impl Write, data: &[u8]) -> io::Result<usize> {
    let mut written = 0;
    while written < data.len() {
        match writer.write(&data[written..]) {
            Ok(0) => break,
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(written)
}
