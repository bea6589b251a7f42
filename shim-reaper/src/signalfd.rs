//! SIGCHLD read from a signalfd: the signal stays blocked, so it is never handled asynchronously, and the
//! fd becomes readable whenever a child changed state.

use crate::{Error, Result};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

pub(crate) struct ChildSignals {
    fd: SignalFd,
}

impl ChildSignals {
    /// Blocks SIGCHLD in the calling thread and opens a nonblocking, close-on-exec signalfd for it.
    pub(crate) fn new() -> Result<Self> {
        let mut mask = SigSet::empty();
        mask.add(Signal::SIGCHLD);
        nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&mask), None)
            .map_err(Error::Signal)?;
        let fd = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
            .map_err(Error::Signal)?;
        Ok(ChildSignals { fd })
    }

    /// Consumes every queued SIGCHLD notification; returns whether there was one.
    pub(crate) fn drain(&mut self) -> bool {
        let mut any = false;
        while let Ok(Some(_)) = self.fd.read_signal() {
            any = true;
        }
        any
    }

    pub(crate) fn raw_fd(&self) -> i32 {
        self.fd.as_raw_fd()
    }

    pub(crate) fn borrowed(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
