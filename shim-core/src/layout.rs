//! Where a container's files live under the state directory.

use crate::ContainerId;
use std::path::{Path, PathBuf};

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

    /// The ids of every container directory under the root, sorted; entries that are not valid ids
    /// are skipped.
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
                if entry.file_type()?.is_dir() {
                    ids.push(id);
                }
            }
        }
        ids.sort();
        Ok(ids)
    }
}
