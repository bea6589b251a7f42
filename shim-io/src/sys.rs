//! The calls of this crate that go to the kernel below what nix offers (one needs `unsafe`).
#![allow(unsafe_code)]

use std::os::fd::AsRawFd;

/// Bytes written to a pipe or fifo and not read yet (`FIONREAD` works on either end).
pub fn queued_bytes(fd: &impl AsRawFd) -> Option<usize> {
    let mut level: nix::libc::c_int = 0;
    // SAFETY: FIONREAD writes one c_int through the pointer, which points at `level`.
    let result = unsafe { nix::libc::ioctl(fd.as_raw_fd(), nix::libc::FIONREAD, &mut level) };
    (result == 0).then(|| usize::try_from(level).unwrap_or(0))
}

/// Whether the write end `fd` of a pipe or fifo has no reader left: such a pipe polls POLLERR.
pub fn has_no_reader(fd: &impl std::os::fd::AsFd) -> bool {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLOUT)];
    poll(&mut fds, PollTimeout::ZERO).is_ok()
        && fds[0]
            .revents()
            .is_some_and(|events| events.contains(PollFlags::POLLERR))
}
