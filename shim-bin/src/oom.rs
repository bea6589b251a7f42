//! Out-of-memory notifications for the container's cgroup (v1: an eventfd registered with the
//! memory controller's `cgroup.event_control`), so both doors report an OOM kill before the exit it
//! causes: `oom_killed` in `tether state`, `/tasks/oom` for containerd.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;

/// A registered OOM notification.
#[derive(Debug)]
pub struct OomWatch {
    event: File,
    _control: File,
}

impl OomWatch {
    /// Watches the memory cgroup process `pid` is in.
    pub fn new(pid: i32) -> io::Result<OomWatch> {
        let dir = memory_cgroup(pid)?;
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

/// The directory of `pid`'s cgroup in the v1 memory hierarchy.
fn memory_cgroup(pid: i32) -> io::Result<PathBuf> {
    let not_found = || io::Error::new(io::ErrorKind::NotFound, "no cgroup v1 memory controller");
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))?;
    let path = cgroups
        .lines()
        .filter_map(|line| {
            let mut fields = line.splitn(3, ':').skip(1);
            fields.next().zip(fields.next())
        })
        .find(|(controllers, _)| controllers.split(',').any(|c| c == "memory"))
        .map(|(_, path)| path.to_owned())
        .ok_or_else(not_found)?;
    let mounts = std::fs::read_to_string("/proc/self/mountinfo")?;
    for line in mounts.lines() {
        let Some((before, after)) = line.split_once(" - ") else {
            continue;
        };
        let mut fields = after.split(' ');
        let (Some("cgroup"), Some(_), Some(options)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if !options.split(',').any(|o| o == "memory") {
            continue;
        }
        let mut before = before.split(' ');
        let root = before.nth(3).unwrap_or("/");
        let mount_point = before.next().unwrap_or_default();
        let relative = path
            .strip_prefix(root)
            .unwrap_or(&path)
            .trim_start_matches('/');
        return Ok(PathBuf::from(mount_point).join(relative));
    }
    Err(not_found())
}
