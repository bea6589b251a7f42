//! The container's root filesystem from the mounts in containerd's Create request (a snapshotter's
//! overlay or bind mount), mounted on the bundle's `rootfs`, and unmounted again at delete.

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use shim_core::RootfsMount as Mount;
use std::path::Path;

/// A mount option as mount(8) spells it: a flag to set, a flag to clear, or data for the filesystem.
fn parse_options(options: &[String]) -> (MsFlags, MsFlags, String) {
    let mut flags = MsFlags::empty();
    let mut propagation = MsFlags::empty();
    let mut data = Vec::new();
    for option in options {
        let (set, clear) = match option.as_str() {
            "ro" => (MsFlags::MS_RDONLY, MsFlags::empty()),
            "rw" => (MsFlags::empty(), MsFlags::MS_RDONLY),
            "bind" => (MsFlags::MS_BIND, MsFlags::empty()),
            "rbind" => (MsFlags::MS_BIND | MsFlags::MS_REC, MsFlags::empty()),
            "nosuid" => (MsFlags::MS_NOSUID, MsFlags::empty()),
            "suid" => (MsFlags::empty(), MsFlags::MS_NOSUID),
            "nodev" => (MsFlags::MS_NODEV, MsFlags::empty()),
            "dev" => (MsFlags::empty(), MsFlags::MS_NODEV),
            "noexec" => (MsFlags::MS_NOEXEC, MsFlags::empty()),
            "exec" => (MsFlags::empty(), MsFlags::MS_NOEXEC),
            "noatime" => (MsFlags::MS_NOATIME, MsFlags::empty()),
            "relatime" => (MsFlags::MS_RELATIME, MsFlags::empty()),
            "sync" => (MsFlags::MS_SYNCHRONOUS, MsFlags::empty()),
            "remount" => (MsFlags::MS_REMOUNT, MsFlags::empty()),
            "defaults" | "async" | "atime" => (MsFlags::empty(), MsFlags::empty()),
            "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave" => {
                propagation |= match option.as_str() {
                    "private" => MsFlags::MS_PRIVATE,
                    "rprivate" => MsFlags::MS_PRIVATE | MsFlags::MS_REC,
                    "shared" => MsFlags::MS_SHARED,
                    "rshared" => MsFlags::MS_SHARED | MsFlags::MS_REC,
                    "slave" => MsFlags::MS_SLAVE,
                    _ => MsFlags::MS_SLAVE | MsFlags::MS_REC,
                };
                continue;
            }
            other => {
                data.push(other.to_owned());
                continue;
            }
        };
        flags = (flags | set) & !clear;
    }
    (flags, propagation, data.join(","))
}

/// Mounts `mounts` in order on `target`. On failure what was mounted is unmounted again; the error
/// is one line.
pub fn mount_rootfs(mounts: &[Mount], target: &Path) -> Result<(), String> {
    if mounts.is_empty() {
        return Ok(());
    }
    std::fs::create_dir_all(target).map_err(|e| format!("rootfs {}: {e}", target.display()))?;
    for (done, m) in mounts.iter().enumerate() {
        if let Err(e) = mount_one(m, target) {
            for _ in 0..done {
                let _ = umount2(target, MntFlags::MNT_DETACH);
            }
            return Err(format!(
                "mount {} ({}) on {}: {e}",
                m.source,
                m.kind,
                target.display()
            ));
        }
    }
    Ok(())
}

fn mount_one(m: &Mount, target: &Path) -> nix::Result<()> {
    let (flags, propagation, data) = parse_options(&m.options);
    let fstype = (!m.kind.is_empty() && m.kind != "bind").then_some(m.kind.as_str());
    let data = (!data.is_empty()).then_some(data.as_str());
    mount(Some(m.source.as_str()), target, fstype, flags, data)?;
    // A bind mount ignores most flags on its first call: read-only and the like need a remount.
    let remount_flags = MsFlags::MS_RDONLY
        | MsFlags::MS_NOSUID
        | MsFlags::MS_NODEV
        | MsFlags::MS_NOEXEC
        | MsFlags::MS_NOATIME;
    if flags.contains(MsFlags::MS_BIND) && flags.intersects(remount_flags) {
        mount(
            None::<&str>,
            target,
            None::<&str>,
            (flags & remount_flags) | MsFlags::MS_BIND | MsFlags::MS_REMOUNT,
            None::<&str>,
        )?;
    }
    if !propagation.is_empty() {
        mount(
            None::<&str>,
            target,
            None::<&str>,
            propagation,
            None::<&str>,
        )?;
    }
    Ok(())
}

/// Unmounts everything on `target` (nothing mounted is not an error).
pub fn unmount_rootfs(target: &Path) {
    while umount2(target, MntFlags::MNT_DETACH).is_ok() {}
}

/// Removes a container's directory in tether's state dir, unmounting first what tether mounted
/// in it (`--rootfs DIR:O`'s overlay): removing through a mount would reach into what is mounted.
pub fn remove_container_dir(dir: &Path) -> std::io::Result<()> {
    unmount_rootfs(&dir.join("bundle").join("rootfs"));
    std::fs::remove_dir_all(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(options: &[&str]) -> Vec<String> {
        options.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn overlay_options_are_data() {
        let (flags, propagation, data) = parse_options(&strings(&[
            "index=off",
            "lowerdir=/a:/b",
            "upperdir=/u",
            "workdir=/w",
        ]));
        assert_eq!(flags, MsFlags::empty());
        assert_eq!(propagation, MsFlags::empty());
        assert_eq!(data, "index=off,lowerdir=/a:/b,upperdir=/u,workdir=/w");
    }

    #[test]
    fn bind_flags_and_later_options_win() {
        let (flags, propagation, data) =
            parse_options(&strings(&["rbind", "ro", "rw", "nosuid", "rprivate"]));
        assert_eq!(
            flags,
            MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_NOSUID
        );
        assert_eq!(propagation, MsFlags::MS_PRIVATE | MsFlags::MS_REC);
        assert_eq!(data, "");
    }
}
