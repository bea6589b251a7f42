//! Out-of-memory notifications for the container's cgroup, so both doors report an OOM kill
//! before the exit it causes: `oom_killed` in `tether state`, `/tasks/oom` for containerd.
//!
//! - cgroup v1: an eventfd registered with the memory controller's `cgroup.event_control`.
//! - cgroup v2: inotify on the cgroup's `memory.events`, whose `oom_kill` count is read when it
//!   changes (and once more when the init exits, so a kill is never reported after the exit).
//!   `oom` counts the times the limit was hit, kill or not; only `oom_kill` is a kill. The file
//!   going with the cgroup ends the watch quietly.

use crate::common::cgroup::Cgroup;
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

/// A registered OOM notification.
#[derive(Debug)]
pub enum OomWatch {
    /// v1: the eventfd the kernel signals, and the control file it was registered with.
    V1 { event: File, _control: File },
    /// v2: inotify on `memory.events`, and the `oom_kill` count reported so far.
    V2 {
        inotify: Inotify,
        events: PathBuf,
        reported: u64,
    },
}

impl OomWatch {
    /// Watches the container's memory cgroup.
    pub fn new(cgroup: &Cgroup) -> io::Result<OomWatch> {
        match cgroup {
            Cgroup::V1 { memory, .. } => Self::v1(memory),
            Cgroup::V2 { dir } => Self::v2(&dir.join("memory.events")),
        }
    }

    fn v1(dir: &Path) -> io::Result<OomWatch> {
        use nix::sys::eventfd::{EfdFlags, EventFd};
        let flags = EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK;
        let event = File::from(OwnedFd::from(EventFd::from_value_and_flags(0, flags)?));
        let control = File::open(dir.join("memory.oom_control"))?;
        std::fs::write(
            dir.join("cgroup.event_control"),
            format!("{} {}", event.as_raw_fd(), control.as_raw_fd()),
        )?;
        Ok(OomWatch::V1 {
            event,
            _control: control,
        })
    }

    /// `events` is a v2 cgroup's `memory.events`. The cgroup is the container's own, made for
    /// it: every kill it counts is the container's, from the first.
    fn v2(events: &Path) -> io::Result<OomWatch> {
        // Unreadable (no memory controller, no access): no watch, and no error for the caller
        // beyond "no OOM notifications".
        std::fs::read_to_string(events)?;
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)?;
        inotify.add_watch(events, AddWatchFlags::IN_MODIFY)?;
        Ok(OomWatch::V2 {
            inotify,
            events: events.to_owned(),
            reported: 0,
        })
    }

    pub fn fd(&self) -> i32 {
        match self {
            OomWatch::V1 { event, .. } => event.as_raw_fd(),
            OomWatch::V2 { inotify, .. } => inotify.as_fd().as_raw_fd(),
        }
    }

    /// Whether OOM kills happened since the last call.
    pub fn fired(&mut self) -> bool {
        match self {
            OomWatch::V1 { event, .. } => {
                let mut count = [0u8; 8];
                matches!(event.read(&mut count), Ok(8)) && u64::from_ne_bytes(count) > 0
            }
            OomWatch::V2 {
                inotify,
                events,
                reported,
            } => {
                // Drained so the fd is quiet again; the count is read whatever they said.
                while inotify.read_events().is_ok_and(|events| !events.is_empty()) {}
                match std::fs::read_to_string(&*events)
                    .ok()
                    .and_then(|t| oom_kills(&t))
                {
                    Some(kills) if kills > *reported => {
                        *reported = kills;
                        true
                    }
                    // Unchanged, or the cgroup is gone.
                    _ => false,
                }
            }
        }
    }
}

/// The `oom_kill` count of a v2 `memory.events`.
fn oom_kills(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix("oom_kill "))
        .and_then(|count| count.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(oom: u64, kills: u64) -> String {
        format!("low 0\nhigh 0\nmax 3\noom {oom}\noom_kill {kills}\noom_group_kill 0\n")
    }

    fn readable(watch: &OomWatch) -> bool {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        let fd = watched_fd(watch);
        let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
        poll(&mut fds, PollTimeout::from(1000u16)).unwrap() == 1
    }

    fn watched_fd(watch: &OomWatch) -> std::os::fd::BorrowedFd<'_> {
        match watch {
            OomWatch::V1 { event, .. } => event.as_fd(),
            OomWatch::V2 { inotify, .. } => inotify.as_fd(),
        }
    }

    #[test]
    fn v2_counts_kills_not_limit_hits_and_ends_quietly_with_the_cgroup() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("memory.events");
        std::fs::write(&file, events(0, 0)).unwrap();
        let mut watch = OomWatch::v2(&file).unwrap();
        assert!(!watch.fired());
        // The limit hit, nothing killed.
        std::fs::write(&file, events(1, 0)).unwrap();
        assert!(readable(&watch), "a change wakes the loop");
        assert!(!watch.fired());
        std::fs::write(&file, events(2, 1)).unwrap();
        assert!(readable(&watch));
        assert!(watch.fired());
        assert!(!watch.fired(), "one kill is reported once");
        // Read at the exit, before the change was seen: still reported.
        std::fs::write(&file, events(3, 2)).unwrap();
        assert!(watch.fired());
        std::fs::remove_file(&file).unwrap();
        assert!(!watch.fired());
    }

    #[test]
    fn v2_without_a_readable_file_is_no_watch() {
        let dir = tempfile::tempdir().unwrap();
        assert!(OomWatch::v2(&dir.path().join("memory.events")).is_err());
    }

    #[test]
    fn oom_kill_is_read_and_oom_group_kill_is_not_it() {
        assert_eq!(oom_kills(&events(5, 2)), Some(2));
        assert_eq!(oom_kills("oom 1\n"), None);
    }
}
