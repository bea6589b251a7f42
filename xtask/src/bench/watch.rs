//! Waiting for things to happen without polling in a loop: inotify for files, pidfd for exits.
#![allow(unsafe_code)]

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Watches one directory; set it up before starting what will change it.
pub struct DirWatch {
    inotify: Inotify,
    dir: PathBuf,
}

impl DirWatch {
    pub fn new(dir: &Path) -> Result<Self, String> {
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)
            .map_err(|e| format!("inotify: {e}"))?;
        inotify
            .add_watch(
                dir,
                AddWatchFlags::IN_CREATE
                    | AddWatchFlags::IN_MODIFY
                    | AddWatchFlags::IN_MOVED_TO
                    | AddWatchFlags::IN_CLOSE_WRITE,
            )
            .map_err(|e| format!("watch {}: {e}", dir.display()))?;
        Ok(DirWatch {
            inotify,
            dir: dir.to_owned(),
        })
    }

    /// Waits until `condition` holds (checked now and after every change in the directory).
    pub fn wait(
        &self,
        timeout: Duration,
        mut condition: impl FnMut() -> bool,
    ) -> Result<Instant, String> {
        let deadline = Instant::now() + timeout;
        loop {
            if condition() {
                return Ok(Instant::now());
            }
            super::check_interrupt()?;
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!(
                    "timed out after {timeout:?} watching {}",
                    self.dir.display()
                ));
            }
            // Wake at least every 100 ms to notice Ctrl-C.
            let millis = left.as_millis().min(100) as u16;
            let mut fds = [PollFd::new(self.inotify.as_fd(), PollFlags::POLLIN)];
            let _ = poll(&mut fds, PollTimeout::from(millis));
            while let Ok(events) = self.inotify.read_events() {
                if events.is_empty() {
                    break;
                }
            }
        }
    }
}

/// Waits for any process (not only a child) to exit, through a pidfd.
pub fn wait_exit(pid: i32, timeout: Duration) -> Result<Instant, String> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let raw = unsafe { nix::libc::syscall(nix::libc::SYS_pidfd_open, pid, 0) };
    if raw < 0 {
        // Already gone.
        return Ok(Instant::now());
    }
    // SAFETY: the syscall returned a fresh fd that nothing else owns.
    let pidfd = unsafe { OwnedFd::from_raw_fd(raw as i32) };
    let deadline = Instant::now() + timeout;
    loop {
        super::check_interrupt()?;
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!("pid {pid} did not exit within {timeout:?}"));
        }
        let millis = left.as_millis().min(100) as u16;
        let mut fds = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
        if let Ok(n) = poll(&mut fds, PollTimeout::from(millis)) {
            if n > 0 {
                return Ok(Instant::now());
            }
        }
    }
}
