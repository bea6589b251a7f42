//! The one call of this crate that needs `unsafe`.
#![allow(unsafe_code)]

use std::os::fd::AsRawFd;

/// Bytes written to a pipe or fifo and not read yet (`FIONREAD` works on either end).
pub fn queued_bytes(fd: &impl AsRawFd) -> Option<usize> {
    let mut level: nix::libc::c_int = 0;
    // SAFETY: FIONREAD writes one c_int through the pointer, which points at `level`.
    let result = unsafe { nix::libc::ioctl(fd.as_raw_fd(), nix::libc::FIONREAD, &mut level) };
    (result == 0).then(|| usize::try_from(level).unwrap_or(0))
}
