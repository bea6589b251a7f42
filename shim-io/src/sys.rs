//! The calls of this crate that go to the kernel below what nix offers (FIONREAD and the log's
//! offset attribute need `unsafe`).
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

/// The extended attribute a rotated log's files carry: the bytes logged before the file began.
const OFFSET_ATTRIBUTE: &std::ffi::CStr = c"user.tether.offset";

/// Sets a log file's starting offset (decimal). File systems without user attributes (tmpfs
/// before Linux 6.6) refuse: the offset is then unknown, which readers allow for.
pub fn set_log_offset(file: &impl AsRawFd, offset: u64) -> std::io::Result<()> {
    let value = offset.to_string();
    // SAFETY: fsetxattr reads `value.len()` bytes from `value` and the NUL-terminated name; both
    // outlive the call.
    let result = unsafe {
        nix::libc::fsetxattr(
            file.as_raw_fd(),
            OFFSET_ATTRIBUTE.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if result == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// A log file's starting offset, where it was set.
pub fn log_offset(file: &impl AsRawFd) -> Option<u64> {
    let mut value = [0u8; 24];
    // SAFETY: fgetxattr writes at most `value.len()` bytes into `value`; the name is NUL-terminated.
    let length = unsafe {
        nix::libc::fgetxattr(
            file.as_raw_fd(),
            OFFSET_ATTRIBUTE.as_ptr(),
            value.as_mut_ptr().cast(),
            value.len(),
        )
    };
    let length = usize::try_from(length).ok()?;
    std::str::from_utf8(value.get(..length)?).ok()?.parse().ok()
}
