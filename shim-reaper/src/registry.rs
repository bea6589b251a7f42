//! The reaper: the process's only caller of `waitpid`, and the registry that routes each exit by pid.

use crate::signalfd::ChildSignals;
use crate::{Error, Exit, ExitStatus, Result};
use mio::unix::SourceFd;
use mio::{event::Source, Interest, Registry, Token};
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant, SystemTime};

/// How many exits nobody has asked about are kept for a late [`Reaper::watch`]. Past this bound the
/// oldest is forgotten and counted in [`ReaperStats::unclaimed_dropped`]. 1,024 exits cost about 40 KiB
/// at most; a shim watches its children right after spawning them, so only true orphans ever age out.
pub const UNCLAIMED_LIMIT: usize = 1024;

/// Counters of what the reaper has done.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReaperStats {
    /// Children reaped, all told.
    pub reaped: u64,
    /// Exits handed to someone who watched the pid.
    pub delivered: u64,
    /// Exits reaped with nobody watching (orphans, or exits that arrived before `watch`).
    pub unclaimed: u64,
    /// Unclaimed exits forgotten because more than [`UNCLAIMED_LIMIT`] newer ones arrived.
    pub unclaimed_dropped: u64,
}

/// Owns `waitpid(-1)` for the process and delivers exits by pid. See the crate docs for the contract.
pub struct Reaper {
    signals: ChildSignals,
    watched: HashSet<i32>,
    /// Exits of watched pids reaped while [`Reaper::wait_for`] waited for another pid.
    ready: VecDeque<Exit>,
    unclaimed: HashMap<i32, Exit>,
    unclaimed_order: VecDeque<i32>,
    stats: ReaperStats,
}

impl std::fmt::Debug for Reaper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reaper")
            .field("watched", &self.watched.len())
            .field("unclaimed", &self.unclaimed.len())
            .field("stats", &self.stats)
            .finish()
    }
}

impl Reaper {
    /// Blocks SIGCHLD in the calling thread and opens the signalfd the reaper listens on.
    pub fn new() -> Result<Self> {
        Ok(Reaper {
            signals: ChildSignals::new()?,
            watched: HashSet::new(),
            ready: VecDeque::new(),
            unclaimed: HashMap::new(),
            unclaimed_order: VecDeque::new(),
            stats: ReaperStats::default(),
        })
    }

    /// Registers interest in `pid`. If its exit was already reaped, returns it at once (and the pid is
    /// not watched); otherwise the exit will come out of [`Reaper::reap`] or [`Reaper::wait_for`].
    pub fn watch(&mut self, pid: i32) -> Option<Exit> {
        if let Some(exit) = self.take_unclaimed(pid) {
            self.stats.delivered += 1;
            return Some(exit);
        }
        self.watched.insert(pid);
        None
    }

    /// Withdraws interest in `pid`; a later exit of it is treated as an orphan's.
    pub fn unwatch(&mut self, pid: i32) {
        self.watched.remove(&pid);
    }

    /// Whether `pid` is watched and its exit not yet delivered.
    pub fn is_watched(&self, pid: i32) -> bool {
        self.watched.contains(&pid)
    }

    /// Reaps every child that has exited and returns the exits of watched pids, in reaping order.
    /// Exits nobody watches are kept for a later [`Reaper::watch`]. Call it on each readable event of
    /// the reaper's registration; calling it at other times is harmless.
    pub fn reap(&mut self) -> Result<Vec<Exit>> {
        self.signals.drain();
        let mut delivered: Vec<Exit> = self.ready.drain(..).collect();
        self.reap_all(|exit| delivered.push(exit))?;
        Ok(delivered)
    }

    /// Blocks until `pid` exits, for at most `timeout`, and returns its exit. Exits of other watched
    /// pids reaped meanwhile are kept for the next [`Reaper::reap`]; nothing is lost or misrouted.
    pub fn wait_for(&mut self, pid: i32, timeout: Duration) -> Result<Exit> {
        if let Some(exit) = self.watch(pid) {
            return Ok(exit);
        }
        if let Some(index) = self.ready.iter().position(|e| e.pid == pid) {
            self.watched.remove(&pid);
            return Ok(self.ready.remove(index).expect("index from position"));
        }
        let deadline = Instant::now() + timeout;
        loop {
            self.signals.drain();
            let mut found = None;
            let mut others = Vec::new();
            self.reap_all(|exit| {
                if exit.pid == pid {
                    found = Some(exit);
                } else {
                    others.push(exit);
                }
            })?;
            self.ready.extend(others);
            if let Some(exit) = found {
                return Ok(exit);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::Timeout { pid, timeout });
            }
            let millis = left.as_millis().clamp(1, i32::MAX as u128) as i32;
            let mut fds = [PollFd::new(self.signals.borrowed(), PollFlags::POLLIN)];
            match poll(
                &mut fds,
                PollTimeout::try_from(millis).unwrap_or(PollTimeout::MAX),
            ) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => return Err(Error::Poll(e.into())),
            }
        }
    }

    /// Reaps what has exited without handing anything out: watched exits wait for the next
    /// [`Reaper::reap`]. For code that blocks on something else (reading a child's output) and must
    /// not leave zombies meanwhile.
    pub fn collect(&mut self) -> Result<()> {
        self.signals.drain();
        let mut delivered = Vec::new();
        self.reap_all(|exit| delivered.push(exit))?;
        self.ready.extend(delivered);
        Ok(())
    }

    /// Whether exits of watched pids wait for [`Reaper::reap`] that the signalfd may no longer tell
    /// of: [`Reaper::wait_for`] and [`Reaper::collect`] drained it while reaping them.
    pub fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }

    /// The fd that becomes readable when a child changed state (for a `poll` outside mio).
    pub fn signal_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.signals.borrowed()
    }

    /// The exit of an unwatched pid, if it was reaped and is still kept.
    pub fn take_unclaimed(&mut self, pid: i32) -> Option<Exit> {
        let exit = self.unclaimed.remove(&pid)?;
        self.unclaimed_order.retain(|&p| p != pid);
        Some(exit)
    }

    /// What the reaper has done so far.
    pub fn stats(&self) -> ReaperStats {
        self.stats
    }

    /// `waitpid(-1, WNOHANG)` until no exited child is left; watched exits go to `deliver`.
    fn reap_all(&mut self, mut deliver: impl FnMut(Exit)) -> Result<()> {
        loop {
            let (pid, status) = match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => (pid.as_raw(), ExitStatus::Exited(code)),
                Ok(WaitStatus::Signaled(pid, signal, core_dumped)) => (
                    pid.as_raw(),
                    ExitStatus::Signaled {
                        signal: signal as i32,
                        core_dumped,
                    },
                ),
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return Ok(()),
                // Stops and continues are not asked for (no WUNTRACED/WCONTINUED); skip them.
                Ok(_) => continue,
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(Error::Wait(e)),
            };
            self.stats.reaped += 1;
            let exit = Exit {
                pid,
                status,
                reaped_at: SystemTime::now(),
            };
            if self.watched.remove(&pid) {
                self.stats.delivered += 1;
                deliver(exit);
            } else {
                self.keep_unclaimed(exit);
            }
        }
    }

    fn keep_unclaimed(&mut self, exit: Exit) {
        self.stats.unclaimed += 1;
        if self.unclaimed.insert(exit.pid, exit).is_some() {
            // A recycled pid: the older exit can never be asked for any more.
            self.unclaimed_order.retain(|&p| p != exit.pid);
            self.stats.unclaimed_dropped += 1;
        }
        self.unclaimed_order.push_back(exit.pid);
        while self.unclaimed_order.len() > UNCLAIMED_LIMIT {
            if let Some(old) = self.unclaimed_order.pop_front() {
                self.unclaimed.remove(&old);
                self.stats.unclaimed_dropped += 1;
            }
        }
    }
}

impl Source for Reaper {
    fn register(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> std::io::Result<()> {
        SourceFd(&self.signals.raw_fd()).register(registry, token, interests)
    }

    fn reregister(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> std::io::Result<()> {
        SourceFd(&self.signals.raw_fd()).reregister(registry, token, interests)
    }

    fn deregister(&mut self, registry: &Registry) -> std::io::Result<()> {
        SourceFd(&self.signals.raw_fd()).deregister(registry)
    }
}
