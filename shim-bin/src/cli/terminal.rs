//! The caller's terminal: raw mode for the length of an interactive session, and its size.

use nix::sys::termios::{self, SetArg, Termios};
use std::os::fd::AsFd;

/// Puts stdin's terminal in raw mode and restores it when dropped.
pub struct RawMode {
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
        Some(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, &self.saved);
    }
}

/// The size (rows, columns) of the terminal on stdout (or stdin), if there is one.
pub fn window_size() -> Option<(u16, u16)> {
    [1, 0].into_iter().find_map(crate::common::sys::window_size)
}

/// `-it` needs a terminal on stdin: typed keys go to the container raw, and a pipe would leave it
/// waiting on a terminal that never answers. docker's words for it.
pub fn stdin_is_a_terminal() -> crate::cli::error::Result<()> {
    if nix::unistd::isatty(0).unwrap_or(false) {
        Ok(())
    } else {
        Err(crate::cli::error::Error::invalid(
            "the input device is not a TTY (leave out -t to pipe input, or -i to have none)",
        ))
    }
}
