//! Where a container's files live under the state directory.

use crate::ContainerId;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Why a path under the state directory is not trusted: someone other than its owner could have
/// written it, so nothing in it (a runtime path above all) may be acted on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Untrusted {
    /// Owned by another user.
    #[error("{path} is owned by uid {owner}, not root or uid {expected}: refusing it")]
    Owner {
        /// The path.
        path: String,
        /// Its owner.
        owner: u32,
        /// The uid that would be trusted besides root.
        expected: u32,
    },
    /// Writable by group or others.
    #[error("{path} is writable by group or others (mode {mode:04o}): refusing it")]
    Writable {
        /// The path.
        path: String,
        /// Its permission bits.
        mode: u32,
    },
    /// A symbolic link, where a directory or file of tether's own belongs.
    #[error("{path} is a symbolic link: refusing it")]
    Link {
        /// The path.
        path: String,
    },
}

/// Checks that `path` (not followed if a link) is owned by root or `uid` and writable by its owner
/// alone. A missing path is no threat: `Ok`.
pub fn check_trusted(path: &Path, uid: u32) -> Result<(), Untrusted> {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    let shown = || path.display().to_string();
    if meta.file_type().is_symlink() {
        return Err(Untrusted::Link { path: shown() });
    }
    if meta.uid() != 0 && meta.uid() != uid {
        return Err(Untrusted::Owner {
            path: shown(),
            owner: meta.uid(),
            expected: uid,
        });
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(Untrusted::Writable {
            path: shown(),
            mode,
        });
    }
    Ok(())
}

/// `<state-dir>/<id>/` holds, for each container:
///
/// | file | what |
/// | --- | --- |
/// | `control.sock` | the daemon's control socket (0600; the directory is 0700) |
/// | `state.json` | the container's [`crate::ContainerState`], replaced atomically on each change |
/// | `exit` | the exit code, written once the container exited and its output is in the log |
/// | `daemon.pid` | the shim daemon's pid |
/// | `shim.log` | the daemon's own diagnostics |
/// | `runtime.log` | the runtime's JSON log (`--log`) |
/// | `container.log` | the container's output, unless `--log` put it elsewhere |
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateLayout {
    root: PathBuf,
}

/// The default state directory.
pub const DEFAULT_STATE_DIR: &str = "/run/tether";

impl StateLayout {
    /// The layout under `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        StateLayout { root: root.into() }
    }

    /// The state directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `<root>/<id>`.
    pub fn container_dir(&self, id: &ContainerId) -> PathBuf {
        self.root.join(id.as_str())
    }

    /// `<root>/<id>/control.sock`.
    pub fn control_socket(&self, id: &ContainerId) -> PathBuf {
        self.container_dir(id).join("control.sock")
    }

    /// `<root>/<id>/state.json`.
    pub fn state_file(&self, id: &ContainerId) -> PathBuf {
        self.container_dir(id).join("state.json")
    }

    /// `<root>/<id>/exit`.
    pub fn exit_file(&self, id: &ContainerId) -> PathBuf {
        self.container_dir(id).join("exit")
    }

    /// `<root>/<id>/daemon.pid`.
    pub fn daemon_pid_file(&self, id: &ContainerId) -> PathBuf {
        self.container_dir(id).join("daemon.pid")
    }

    /// `<root>/<id>/shim.log`.
    pub fn shim_log(&self, id: &ContainerId) -> PathBuf {
        self.container_dir(id).join("shim.log")
    }

    /// `<root>/<id>/runtime.log`.
    pub fn runtime_log(&self, id: &ContainerId) -> PathBuf {
        self.container_dir(id).join("runtime.log")
    }

    /// `<root>/<id>/init.pid`: where the runtime writes the container's init pid.
    pub fn init_pid_file(&self, id: &ContainerId) -> PathBuf {
        self.container_dir(id).join("init.pid")
    }

    /// `<root>/<id>/container.log`: the default log.
    pub fn default_log(&self, id: &ContainerId) -> PathBuf {
        self.container_dir(id).join("container.log")
    }

    /// Checks the state directory itself (see [`check_trusted`]).
    pub fn check_root(&self, uid: u32) -> Result<(), Untrusted> {
        check_trusted(&self.root, uid)
    }

    /// Checks every level of a container's entry that is read: the state directory, the
    /// container's directory and its `state.json`.
    pub fn check_entry(&self, id: &ContainerId, uid: u32) -> Result<(), Untrusted> {
        check_trusted(&self.root, uid)?;
        check_trusted(&self.container_dir(id), uid)?;
        check_trusted(&self.state_file(id), uid)
    }

    /// Whether `id` is a container's entry: a directory with tether's `state.json` in it. Nothing
    /// else under the root is one (a runtime's root, a shim socket directory, a container still
    /// being made), so nothing else is listed, named by a prefix, or removed.
    pub fn is_container(&self, id: &ContainerId) -> bool {
        std::fs::symlink_metadata(self.state_file(id)).is_ok_and(|m| m.is_file())
    }

    /// The ids of every container entry under the root ([`StateLayout::is_container`]), sorted;
    /// entries that are not valid ids are skipped.
    pub fn list(&self) -> std::io::Result<Vec<ContainerId>> {
        let mut ids = Vec::new();
        let entries = match std::fs::read_dir(&self.root) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ids),
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            if let Some(id) = entry.file_name().to_str().and_then(|n| n.parse().ok()) {
                if entry.file_type()?.is_dir() && self.is_container(&id) {
                    ids.push(id);
                }
            }
        }
        ids.sort();
        Ok(ids)
    }
}

#[cfg(test)]
mod trust_tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn only_a_directory_with_a_state_file_is_a_container() {
        let dir = tempfile::tempdir().unwrap();
        let layout = StateLayout::new(dir.path());
        let web: ContainerId = "web".parse().unwrap();
        std::fs::create_dir(layout.container_dir(&web)).unwrap();
        std::fs::write(layout.state_file(&web), "{}").unwrap();
        // A runtime's root, a socket directory, a file, a state.json that is not a file.
        for other in ["runc", "s"] {
            std::fs::create_dir_all(dir.path().join(other).join("abc")).unwrap();
        }
        std::fs::write(dir.path().join("notes"), "").unwrap();
        std::fs::create_dir_all(dir.path().join("odd").join("state.json")).unwrap();
        assert_eq!(layout.list().unwrap(), std::slice::from_ref(&web));
        assert!(layout.is_container(&web));
        for other in ["runc", "s", "notes", "odd", "missing"] {
            assert!(!layout.is_container(&other.parse().unwrap()), "{other}");
        }
    }

    fn uid_of(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().uid()
    }

    #[test]
    fn an_entry_only_its_owner_can_write_is_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let layout = StateLayout::new(dir.path());
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
        let id: ContainerId = "web".parse().unwrap();
        std::fs::create_dir(layout.container_dir(&id)).unwrap();
        std::fs::write(layout.state_file(&id), "{}").unwrap();
        std::fs::set_permissions(
            layout.state_file(&id),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        std::fs::set_permissions(
            layout.container_dir(&id),
            std::fs::Permissions::from_mode(0o700),
        )
        .unwrap();
        let uid = uid_of(dir.path());
        assert_eq!(layout.check_entry(&id, uid), Ok(()));
        // Any level writable by others is refused.
        for (path, mode) in [
            (dir.path().to_owned(), 0o777),
            (layout.container_dir(&id), 0o770),
            (layout.state_file(&id), 0o666),
        ] {
            let before = std::fs::metadata(&path).unwrap().permissions();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let refused = layout.check_entry(&id, uid).unwrap_err();
            assert!(
                matches!(refused, Untrusted::Writable { .. }),
                "{}: {refused}",
                path.display()
            );
            assert!(refused.to_string().contains("writable by group or others"));
            std::fs::set_permissions(&path, before).unwrap();
        }
    }

    #[test]
    fn another_users_entry_and_links_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let owner = uid_of(dir.path());
        let planted = dir.path().join("planted");
        std::fs::create_dir(&planted).unwrap();
        if owner == 0 {
            // As root: a directory another user owns.
            std::os::unix::fs::chown(&planted, Some(4242), Some(4242)).unwrap();
            assert!(matches!(
                check_trusted(&planted, 0),
                Err(Untrusted::Owner { owner: 4242, .. })
            ));
        } else {
            // Not root: our own directory, as seen by a caller of another uid.
            assert!(matches!(
                check_trusted(&planted, owner + 1),
                Err(Untrusted::Owner { .. })
            ));
        }
        let link = dir.path().join("link");
        std::os::unix::fs::symlink("/", &link).unwrap();
        assert!(matches!(
            check_trusted(&link, owner),
            Err(Untrusted::Link { .. })
        ));
        assert_eq!(check_trusted(&dir.path().join("missing"), owner), Ok(()));
    }
}
