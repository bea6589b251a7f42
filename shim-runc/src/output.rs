//! Typed results of the runtime's JSON outputs (`state`, `list`, `ps`, `events --stats`).

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt;

/// A container's status as the runtime reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// `create` ran; the process waits for `start`.
    Created,
    /// The process is running.
    Running,
    /// The container's processes are frozen.
    Paused,
    /// The process has exited.
    Stopped,
    /// Being created (crun may report this briefly).
    Creating,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
            Status::Creating => "creating",
        })
    }
}

/// The output of `state ID`, and one element of `list --format json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerState {
    /// The container id.
    pub id: String,
    /// The init process's pid on the host (0 once stopped).
    pub pid: i32,
    /// The status.
    pub status: Status,
    /// The bundle directory.
    pub bundle: String,
    /// The root filesystem.
    #[serde(default)]
    pub rootfs: String,
    /// When it was created (RFC 3339).
    #[serde(default)]
    pub created: String,
    /// The annotations from config.json.
    #[serde(default)]
    pub annotations: Option<HashMap<String, String>>,
}

/// CPU time used by the container, in nanoseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuUsage {
    /// Total CPU time.
    #[serde(default)]
    pub total: u64,
    /// Time in kernel mode.
    #[serde(default)]
    pub kernel: u64,
    /// Time in user mode.
    #[serde(default)]
    pub user: u64,
}

/// Memory used by the container, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryUsage {
    /// Current usage.
    #[serde(default)]
    pub usage: u64,
    /// The limit.
    #[serde(default)]
    pub limit: u64,
    /// The highest usage seen.
    #[serde(default)]
    pub max: u64,
    /// How often the limit was hit.
    #[serde(default)]
    pub failcnt: u64,
}

/// Process counts of the container.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PidsUsage {
    /// Processes now.
    #[serde(default)]
    pub current: u64,
    /// The limit (0: none).
    #[serde(default)]
    pub limit: u64,
}

/// One set of statistics from `events --stats ID`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// CPU usage.
    pub cpu: CpuUsage,
    /// Memory usage.
    pub memory: MemoryUsage,
    /// Process counts.
    pub pids: PidsUsage,
    /// The whole `data` object, for the fields not typed here (blkio, hugetlb, network, ...).
    pub raw: serde_json::Value,
}

#[derive(Deserialize)]
struct StatsEvent {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    data: serde_json::Value,
}

#[derive(Deserialize, Default)]
struct CpuData {
    #[serde(default)]
    usage: CpuUsage,
}

#[derive(Deserialize, Default)]
struct MemoryData {
    #[serde(default)]
    usage: MemoryUsage,
}

pub(crate) fn parse_state(stdout: &[u8]) -> serde_json::Result<ContainerState> {
    serde_json::from_slice(stdout)
}

/// `list --format json` prints `null` when there is no container.
pub(crate) fn parse_list(stdout: &[u8]) -> serde_json::Result<Vec<ContainerState>> {
    Ok(serde_json::from_slice::<Option<Vec<ContainerState>>>(stdout)?.unwrap_or_default())
}

pub(crate) fn parse_ps(stdout: &[u8]) -> serde_json::Result<Vec<i32>> {
    Ok(serde_json::from_slice::<Option<Vec<i32>>>(stdout)?.unwrap_or_default())
}

pub(crate) fn parse_stats(stdout: &[u8]) -> serde_json::Result<Stats> {
    // `events --stats` prints one JSON object per line; take the first of type "stats".
    let mut last_error = None;
    for line in stdout.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        match serde_json::from_slice::<StatsEvent>(line) {
            Ok(event) if event.kind == "stats" => {
                let cpu: CpuData = sub_object(&event.data, "cpu")?;
                let memory: MemoryData = sub_object(&event.data, "memory")?;
                let pids: PidsUsage = sub_object(&event.data, "pids")?;
                return Ok(Stats {
                    cpu: cpu.usage,
                    memory: memory.usage,
                    pids,
                    raw: event.data,
                });
            }
            Ok(_) => {}
            Err(e) => last_error = Some(e),
        }
    }
    Err(last_error.unwrap_or_else(|| serde::de::Error::custom("no stats event in the output")))
}

fn sub_object<T: for<'de> Deserialize<'de> + Default>(
    data: &serde_json::Value,
    key: &str,
) -> serde_json::Result<T> {
    match data.get(key) {
        Some(value) if !value.is_null() => T::deserialize(value),
        _ => Ok(T::default()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Captured from runc 1.1.5 on Debian 12 (busybox fixture).
    const STATE: &str = r#"{
  "ociVersion": "1.0.2-dev",
  "id": "web",
  "pid": 4242,
  "status": "running",
  "bundle": "/tmp/b",
  "rootfs": "/tmp/b/rootfs",
  "created": "2026-11-27T02:40:01.123456789Z",
  "owner": ""
}"#;

    #[test]
    fn parses_state() {
        let state = parse_state(STATE.as_bytes()).unwrap();
        assert_eq!(state.id, "web");
        assert_eq!(state.pid, 4242);
        assert_eq!(state.status, Status::Running);
        assert_eq!(state.rootfs, "/tmp/b/rootfs");
    }

    #[test]
    fn parses_empty_and_full_lists() {
        assert!(parse_list(b"null\n").unwrap().is_empty());
        let list = format!("[{STATE}]");
        assert_eq!(parse_list(list.as_bytes()).unwrap()[0].id, "web");
    }

    #[test]
    fn parses_ps() {
        assert_eq!(parse_ps(b"[12,34]\n").unwrap(), vec![12, 34]);
        assert!(parse_ps(b"null").unwrap().is_empty());
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse_state(b"container not found").is_err());
        assert!(parse_stats(b"").is_err());
    }
}
