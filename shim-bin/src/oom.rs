//! Out-of-memory notifications for the container's cgroup (v1: an eventfd registered with the
//! memory controller's `cgroup.event_control`), so both doors report an OOM kill before the exit it
//! causes: `oom_killed` in `tether state`, `/tasks/oom` for containerd.

use crate::shim::Cgroup;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd};

/// A registered OOM notification.
#[derive(Debug)]
pub struct OomWatch {
    event: File,
    _control: File,
}

impl OomWatch {
    /// Watches the container's memory cgroup (v1 only: v2 says OOM kills in `memory.events`).
    pub fn new(cgroup: &Cgroup) -> io::Result<OomWatch> {
        let Cgroup::V1 { memory: dir, .. } = cgroup else {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "no cgroup v1 memory controller",
            ));
        };
        use nix::sys::eventfd::{EfdFlags, EventFd};
        let flags = EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK;
        let event = File::from(OwnedFd::from(EventFd::from_value_and_flags(0, flags)?));
        let control = File::open(dir.join("memory.oom_control"))?;
        std::fs::write(
            dir.join("cgroup.event_control"),
            format!("{} {}", event.as_raw_fd(), control.as_raw_fd()),
        )?;
        Ok(OomWatch {
            event,
            _control: control,
        })
    }

    pub fn fd(&self) -> i32 {
        self.event.as_raw_fd()
    }

    /// Whether OOM kills happened since the last call.
    pub fn fired(&mut self) -> bool {
        let mut count = [0u8; 8];
        matches!(self.event.read(&mut count), Ok(8)) && u64::from_ne_bytes(count) > 0
    }
}
