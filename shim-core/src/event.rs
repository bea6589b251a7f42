//! What happens to a container, as the supervisor announces it. Every door turns these into its
//! own wire (containerd's task events; tether's `state.json`).

use crate::{ExecId, Exit, ProcessKey};
use std::path::PathBuf;

/// Where a process's stdio goes, as its creator named it: fifo paths or URIs (`file://`,
/// `binary://`), empty when not wanted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StdioPaths {
    pub stdin: String,
    pub stdout: String,
    pub stderr: String,
    pub terminal: bool,
}

/// One mount of a container's root filesystem (a snapshotter's overlay or bind mount).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RootfsMount {
    /// The filesystem type (`overlay`, `bind`, ...).
    pub kind: String,
    pub source: String,
    /// mount(8) options.
    pub options: Vec<String>,
}

/// A domain event, in the order it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The runtime created the container; its init is `pid`.
    Created {
        pid: i32,
        bundle: PathBuf,
        rootfs: Vec<RootfsMount>,
        stdio: StdioPaths,
    },
    /// A process started (the init, or an exec).
    Started {
        key: ProcessKey,
        pid: i32,
    },
    /// An exec was registered (not started yet).
    ExecAdded {
        exec: ExecId,
    },
    /// A process's exit was recorded: its output was delivered first.
    Exited {
        key: ProcessKey,
        exit: Exit,
    },
    /// The kernel killed a process of the container for want of memory.
    Oom,
    Paused,
    Resumed,
    /// The container was removed; its init's exit as recorded (or [`Exit::forced`]).
    Deleted {
        pid: i32,
        exit: Exit,
    },
}
