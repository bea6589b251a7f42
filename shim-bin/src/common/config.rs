//! What `tether run` hands to the daemon it starts, and what the daemon reports back.

use serde::{Deserialize, Serialize};
use shim_core::ContainerId;
use shim_io::LogFormat;
use std::path::PathBuf;

/// Everything the daemon needs, validated by `tether run` before the daemon starts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DaemonConfig {
    /// The container id.
    pub id: ContainerId,
    /// The bundle directory (absolute).
    pub bundle: PathBuf,
    /// The state directory (absolute).
    pub state_dir: PathBuf,
    /// The container's log (absolute).
    pub log_path: PathBuf,
    /// `cri`, `json-file` or `raw`.
    pub log_format: String,
    /// Rotate at this size.
    pub log_max_size: Option<u64>,
    /// Keep this many files.
    pub log_max_files: u32,
    /// The runtime binary (absolute).
    pub runtime: PathBuf,
    /// The runtime's --root.
    pub runtime_root: Option<PathBuf>,
    /// Keep a stdin pipe for the container (`tether attach` writes to it).
    #[serde(default)]
    pub stdin: bool,
    /// Give the container a terminal (its output, both streams, comes through it).
    #[serde(default)]
    pub tty: bool,
    /// Keep the container's output from its start for the first attach client (`tether run -i`
    /// or `-t` in the foreground attaches just after the start).
    #[serde(default)]
    pub replay_to_first_attach: bool,
    /// Remove the container once its exit is recorded (`run -d --rm`).
    #[serde(default)]
    pub remove_on_exit: bool,
    /// systemd's notification socket (`$NOTIFY_SOCKET` of `tether run`): told READY=1 once the
    /// container runs. Not passed on in the environment, where the runtime would act on it.
    #[serde(default)]
    pub notify_socket: Option<PathBuf>,
    /// The longest one runtime command may take before it is killed, in seconds.
    #[serde(default = "default_runtime_timeout")]
    pub runtime_timeout_secs: u64,
    /// `--rootfs DIR:O`: DIR, under an overlay on the bundle's `rootfs` whose upper and work
    /// directories are in the container's state dir (mounted before the start, unmounted at
    /// delete).
    #[serde(default)]
    pub overlay_lower: Option<PathBuf>,
    /// `--network bridge` (or `-p`): attached between the runtime's create and start.
    #[serde(default)]
    pub network: Option<crate::shim::network::Request>,
}

/// `tether run --runtime-timeout`'s default.
pub const DEFAULT_RUNTIME_TIMEOUT_SECS: u64 = 60;

fn default_runtime_timeout() -> u64 {
    DEFAULT_RUNTIME_TIMEOUT_SECS
}

impl DaemonConfig {
    /// The log format, already validated by `tether run`.
    pub fn format(&self) -> LogFormat {
        self.log_format.parse().unwrap_or(LogFormat::Cri)
    }
}

/// The one line the daemon writes back to `tether run` once the container started, or failed to.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StartReport {
    /// Running, with this init pid.
    Started { pid: i32 },
    /// Nothing was left running; the message says why, and `code` is the shell's code when the
    /// command itself could not be run (127 not found, 126 not runnable).
    Failed {
        message: String,
        #[serde(default)]
        code: Option<i32>,
    },
}
