//! The caller's terminal: raw mode for the length of an interactive session, and its size.

use nix::sys::termios::{self, SetArg, Termios};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

/// Puts a terminal in raw mode and restores it when dropped.
pub struct RawMode {
    fd: i32,
    saved: Termios,
}

impl RawMode {
    /// Raw mode on stdin, when stdin is a terminal.
    pub fn stdin() -> Option<RawMode> {
        let stdin = std::io::stdin();
        let saved = termios::tcgetattr(stdin.as_fd()).ok()?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw).ok()?;
        Some(RawMode {
            fd: stdin.as_raw_fd(),
            saved,
        })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // SAFETY: fd 0 stays open for the whole process.
        let fd = unsafe { BorrowedFd::borrow_raw(self.fd) };
        let _ = termios::tcsetattr(fd, SetArg::TCSANOW, &self.saved);
    }
}

nix::ioctl_read_bad!(
    get_window_size_ioctl,
    nix::libc::TIOCGWINSZ,
    nix::libc::winsize
);

/// The size (rows, columns) of the terminal on stdout (or stdin), if there is one.
pub fn window_size() -> Option<(u16, u16)> {
    for fd in [1, 0] {
        let mut size = nix::libc::winsize {
            ws_row: 0,
            ws_col: 0,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCGWINSZ writes one winsize to the valid pointer; a non-terminal fd just fails.
        if unsafe { get_window_size_ioctl(fd, &mut size) }.is_ok() && size.ws_row > 0 {
            return Some((size.ws_row, size.ws_col));
        }
    }
    None
}
