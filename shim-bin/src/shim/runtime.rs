//! The runtime options in force for a container (what containerd's runc options can say; the ttrpc
//! door decodes them), the runtime client they describe, and their copy in the bundle, which
//! `delete` reads after the shim is gone.

use serde::{Deserialize, Serialize};
use shim_runc::Runc;
use std::path::{Path, PathBuf};

/// The longest one runtime command may take before it is killed (a hung runtime must not hang the
/// shim's one thread for ever).
pub const RUNTIME_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Where `start` keeps the options containerd passed on stdin, and Create the ones in force.
const SAVED: &str = "tether-options.json";

/// The options tether acts on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeOptions {
    /// The runtime binary (`runc` on PATH when empty).
    pub binary_name: String,
    /// The runtime's `--root` (`/run/containerd/runc/<namespace>` when empty, as the runc shim).
    pub root: String,
    pub systemd_cgroup: bool,
    pub no_pivot_root: bool,
    pub no_new_keyring: bool,
    /// Owner of the process's stdio pipes (for user namespaces).
    pub io_uid: u32,
    pub io_gid: u32,
    /// A cgroup (v1 path) the shim daemon moves itself into.
    pub shim_cgroup: String,
    /// Rotate a `file://` log at this size (0: never).
    #[serde(default)]
    pub log_max_size: u64,
    /// Keep this many files of a rotated log.
    #[serde(default)]
    pub log_max_files: u32,
}

impl RuntimeOptions {
    /// The runtime's `--root`.
    pub fn runc_root(&self, namespace: &str) -> PathBuf {
        if self.root.is_empty() {
            Path::new("/run/containerd/runc").join(namespace)
        } else {
            PathBuf::from(&self.root)
        }
    }

    /// The owner IoUid and IoGid give the process's stdio, when they name one.
    pub fn io_ids(&self) -> Option<(u32, u32)> {
        (self.io_uid != 0 || self.io_gid != 0).then_some((self.io_uid, self.io_gid))
    }

    /// The runtime client these options describe.
    pub fn runc(&self, namespace: &str, bundle: &Path) -> Runc {
        let binary = if self.binary_name.is_empty() {
            "runc"
        } else {
            &self.binary_name
        };
        Runc::new(binary)
            .root(self.runc_root(namespace))
            .log(bundle.join("log.json"))
            .systemd_cgroup(self.systemd_cgroup)
            .timeout(RUNTIME_TIMEOUT)
            .scratch_dir(bundle)
    }

    /// Keeps the options in the bundle.
    pub fn save(&self, bundle: &Path) -> std::io::Result<()> {
        let json = serde_json::to_vec(self).expect("options serialize");
        std::fs::write(bundle.join(SAVED), json)
    }

    /// The options kept in the bundle, else the defaults.
    pub fn load(bundle: &Path) -> RuntimeOptions {
        std::fs::read(bundle.join(SAVED))
            .ok()
            .and_then(|json| serde_json::from_slice(&json).ok())
            .unwrap_or_default()
    }
}

/// Moves this process into the v1 cgroup `path` of every mounted controller that has it.
pub fn join_cgroup(path: &str) -> Result<(), String> {
    let relative = path.trim_start_matches('/');
    let mut joined = false;
    let controllers =
        std::fs::read_dir("/sys/fs/cgroup").map_err(|e| format!("/sys/fs/cgroup: {e}"))?;
    for controller in controllers.flatten() {
        let procs = controller.path().join(relative).join("cgroup.procs");
        if procs.exists() && std::fs::write(&procs, std::process::id().to_string()).is_ok() {
            joined = true;
        }
    }
    if joined {
        Ok(())
    } else {
        Err(format!("shim cgroup {path}: no controller has it"))
    }
}

/// Runtime commands wait for their exit through the reaper, the one owner of `waitpid`.
pub struct ReaperWait<'a>(pub &'a mut shim_reaper::Reaper);

impl shim_runc::ExitWaiter for ReaperWait<'_> {
    fn wait(&mut self, pid: i32) -> std::io::Result<shim_core::ExitStatus> {
        let exit = self
            .0
            .wait_for(pid, RUNTIME_TIMEOUT)
            .map_err(std::io::Error::other)?;
        Ok(exit.status)
    }

    fn wakeup_fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        Some(self.0.signal_fd())
    }

    fn service(&mut self) {
        let _ = self.0.collect();
    }

    fn wait_timeout(
        &mut self,
        pid: i32,
        timeout: std::time::Duration,
    ) -> std::io::Result<Option<shim_core::ExitStatus>> {
        match self.0.wait_for(pid, timeout) {
            Ok(exit) => Ok(Some(exit.status)),
            Err(shim_reaper::Error::Timeout { .. }) => Ok(None),
            Err(e) => Err(std::io::Error::other(e)),
        }
    }
}

/// The pid a runtime wrote to its `--pid-file`.
pub fn read_pid(path: &Path) -> Result<i32, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("runtime pid file {}: {e}", path.display()))?;
    text.trim()
        .parse()
        .map_err(|_| format!("runtime pid file {}: not a pid: {text:?}", path.display()))
}
