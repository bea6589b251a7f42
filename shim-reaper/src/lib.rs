//! The reaping half of a container shim: become a subreaper, turn SIGCHLD into a [`mio`] event, reap
//! every child with `waitpid(-1, WNOHANG)`, and deliver each exit to whoever registered interest in its
//! pid — including exits reaped before anyone asked.
//!
//! A shim is the parent of processes it did not start (a container's init lands on it when `runc create`
//! exits) and of processes it did (`runc` commands). One owner of `waitpid(-1)` is the only way to reap
//! orphans without stealing the exit status of a child someone else is waiting for. That owner is the
//! [`Reaper`]: nothing else in the process may call `wait`.
//!
//! # Contract
//!
//! * **One thread, no handler.** [`Reaper::new`] blocks SIGCHLD in the calling thread and reads it from a
//!   signalfd, so no work happens in a signal handler. Create the reaper before any other thread is
//!   started, or block SIGCHLD in those threads too.
//! * **Subscribe before spawn.** Call [`Reaper::watch`] with a child's pid right after spawning it, before
//!   control returns to the event loop. An exit reaped for a pid nobody watches yet is kept (up to
//!   [`UNCLAIMED_LIMIT`] of them), and [`Reaper::watch`] hands it over at once.
//! * **Orphans cost nothing.** Exits nobody ever asks about are reaped (no zombie), counted, and forgotten
//!   once more than [`UNCLAIMED_LIMIT`] newer ones have arrived.
//!
//! An exit is shim-core's [`Exit`] (pid, [`ExitStatus`], when it was reaped): the word the
//! supervisor, its doors and the other library crates all use for it.
//!
//! # Example
//!
//! ```
//! use std::process::Command;
//! use std::time::Duration;
//! use shim_reaper::{ExitStatus, Reaper};
//!
//! let mut reaper = Reaper::new()?;
//! let child = Command::new("sh").args(["-c", "exit 3"]).spawn()?;
//! let pid = child.id() as i32;
//! // Interest first; the exit can only be reaped by the reaper, so it cannot be lost.
//! assert!(reaper.watch(pid).is_none());
//! let exit = reaper.wait_for(pid, Duration::from_secs(10))?;
//! assert_eq!(exit.status, ExitStatus::Exited(3));
//! assert_eq!(exit.status.code(), 3);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! In an event loop, register the reaper with a [`mio::Poll`] and call [`Reaper::reap`] on its events:
//!
//! ```no_run
//! use mio::{Events, Interest, Poll, Token};
//! use shim_reaper::Reaper;
//!
//! let mut poll = Poll::new()?;
//! let mut reaper = Reaper::new()?;
//! poll.registry().register(&mut reaper, Token(0), Interest::READABLE)?;
//! let mut events = Events::with_capacity(64);
//! loop {
//!     poll.poll(&mut events, None)?;
//!     for event in events.iter() {
//!         if event.token() == Token(0) {
//!             for exit in reaper.reap()? {
//!                 println!("{} exited: {}", exit.pid, exit.status);
//!             }
//!         }
//!     }
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![forbid(unsafe_code)]

mod registry;
mod signalfd;

mod subreaper;

pub use registry::{Reaper, ReaperStats, UNCLAIMED_LIMIT};
pub use shim_core::{Exit, ExitStatus};
pub use subreaper::{is_child_subreaper, set_child_subreaper};

/// What can go wrong while reaping.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `prctl(PR_SET_CHILD_SUBREAPER)` or its getter failed.
    #[error("{action} child subreaper: {source}")]
    Subreaper {
        action: &'static str,
        source: nix::Error,
    },
    /// Blocking SIGCHLD or creating the signalfd failed.
    #[error("set up SIGCHLD delivery: {0}")]
    Signal(nix::Error),
    /// `waitpid` failed for a reason other than "no children".
    #[error("waitpid: {0}")]
    Wait(nix::Error),
    /// [`Reaper::wait_for`] ran out of time.
    #[error("pid {pid} did not exit within {timeout:?}")]
    Timeout {
        pid: i32,
        timeout: std::time::Duration,
    },
    /// Polling the signalfd failed.
    #[error("poll SIGCHLD: {0}")]
    Poll(std::io::Error),
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
