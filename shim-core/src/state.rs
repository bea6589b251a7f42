//! A container's recorded state.

use crate::ContainerId;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Where the container is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Created by the runtime, not started yet.
    Created,
    /// Its init process runs.
    Running,
    /// Frozen.
    Paused,
    /// Its init exited; the exit is recorded.
    Stopped,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        })
    }
}

/// How the container's init ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitRecord {
    /// The shell convention: the exit code, or 128 + the signal.
    pub code: i32,
    /// The signal that killed it, if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    /// When it was reaped (RFC 3339).
    pub exited_at: String,
}

impl ExitRecord {
    /// The record of an exit; `exited_at` is its time in RFC 3339.
    pub fn new(exit: &crate::Exit, exited_at: String) -> ExitRecord {
        ExitRecord {
            code: exit.code(),
            signal: exit.signal(),
            exited_at,
        }
    }
}

/// Everything `tether state` reports, and what `state.json` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerState {
    /// The id.
    pub id: ContainerId,
    /// The status.
    pub status: Status,
    /// The init process's pid on the host.
    pub pid: i32,
    /// The shim daemon's pid.
    pub daemon_pid: i32,
    /// The bundle directory.
    pub bundle: PathBuf,
    /// The container's log.
    pub log_path: PathBuf,
    /// Its format: `cri`, `json-file` or `raw`.
    pub log_format: String,
    /// The runtime binary.
    pub runtime: PathBuf,
    /// The runtime's `--root`, if not its default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_root: Option<PathBuf>,
    /// When it was created (RFC 3339).
    pub created_at: String,
    /// The exit, once there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit: Option<ExitRecord>,
    /// The kernel killed a process of the container for want of memory (its cgroup's limit).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub oom_killed: bool,
}
