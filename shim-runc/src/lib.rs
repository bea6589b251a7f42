//! A typed client for the `runc` command line, and for runtimes that speak it (crun, youki).
//!
//! Every subcommand a shim needs is a [`Subcommand`] value built from an options type; the argument
//! vector is a pure function of it ([`Runc::argv`]), so it can be reviewed and snapshot-tested. Commands
//! run in one of two forms:
//!
//! * **blocking** — [`Runc::state`], [`Runc::create`], [`Runc::kill`], ...: spawn, read the output, wait,
//!   and return typed results. The wait goes through an [`ExitWaiter`]: [`DirectWait`] (`waitpid(pid)`)
//!   for standalone use, or the caller's reaper for a process that owns `waitpid(-1)`.
//! * **spawn** — [`Runc::spawn`]: returns a [`Spawned`] holding the pid and the pipes asked for, and
//!   never waits for the child itself. A subreaper registers interest in [`Spawned::pid`] before it
//!   returns to its event loop, collects the exit through its own reaper, and hands the wait status to
//!   [`Spawned::finish`], which turns it into `Ok` or a clear [`Error`].
//!
//! Each child starts with every signal at its default disposition and an empty signal mask (Rust ignores
//! SIGPIPE, and an ignored signal survives `exec` into runc and the container), its stdio set explicitly,
//! and every other inherited fd closed on exec.
//!
//! Errors name the subcommand and the container and carry the runtime's own last error message, read from
//! its JSON `--log`, never the container's output: `runc create web: exit status 1: container with id
//! exists: web`. stdout and stderr are never mixed before JSON is parsed.
//!
//! What a failure was is said once, here, as a [`FailureKind`] read from the runtime's message
//! (container missing, process finished, command not found or not runnable); what a kind means (a
//! code, an answer) is the caller's policy. Like the other library crates it speaks shim-core's
//! words where they meet: an exit is a [`shim_core::ExitStatus`].
//!
//! # Example
//!
//! ```no_run
//! use shim_runc::{CreateOptions, DirectWait, ProcessIo, Runc};
//! use std::process::Stdio;
//!
//! let runc = Runc::new("runc").root("/run/my-runc").log("/run/my-runc/log.json");
//! let options = CreateOptions::new("/path/to/bundle").pid_file("/run/my-runc/web.pid");
//! // The container's stdio: here, ours.
//! let io = ProcessIo::new(Stdio::null(), Stdio::inherit(), Stdio::inherit());
//! runc.create("web", &options, io, &mut DirectWait)?;
//! runc.start("web", &mut DirectWait)?;
//! let state = runc.state("web", &mut DirectWait)?;
//! println!("{} is {} with pid {}", state.id, state.status, state.pid);
//! # Ok::<(), shim_runc::Error>(())
//! ```
//!
//! The argument vectors alone need no runtime at all:
//!
//! ```
//! use shim_runc::{KillOptions, Runc, Subcommand};
//!
//! let runc = Runc::new("runc").root("/run/r");
//! let argv = runc.argv(&Subcommand::Kill { id: "web".into(), options: KillOptions::new(9).all(true) });
//! assert_eq!(argv, ["--root", "/run/r", "kill", "--all", "web", "9"]);
//! ```

// `unsafe` is denied but in `child_setup`: the `pre_exec` hook, rt_sigaction and close_range.
#![deny(unsafe_code)]

mod child_setup;
pub use child_setup::{close_fds_from, prepare as prepare_child};
mod error;
mod exec;
mod options;
mod output;

pub use error::{last_log_error, Error, FailureKind, Result};
pub use exec::{run_helper, DirectWait, ExitWaiter, HelperOutput, ProcessIo, Spawned};
pub use options::{
    CheckpointOptions, CreateOptions, DeleteOptions, ExecOptions, KillOptions, RunOptions,
    Subcommand,
};
pub use output::{ContainerState, CpuUsage, MemoryUsage, PidsUsage, Stats, Status};

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// A runtime binary and the global options given before every subcommand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Runc {
    binary: PathBuf,
    root: Option<PathBuf>,
    log: Option<PathBuf>,
    systemd_cgroup: bool,
    debug: bool,
    rootless: Option<bool>,
    scratch_dir: PathBuf,
    timeout: Option<std::time::Duration>,
    extra_global_args: Vec<OsString>,
    preserved_fds: u32,
}

impl Runc {
    /// A runtime found as `binary`: a path, or a name looked up in `PATH` when spawned.
    pub fn new(binary: impl Into<PathBuf>) -> Self {
        Runc {
            binary: binary.into(),
            root: None,
            log: None,
            systemd_cgroup: false,
            debug: false,
            rootless: None,
            scratch_dir: std::env::temp_dir(),
            timeout: None,
            extra_global_args: Vec::new(),
            preserved_fds: 0,
        }
    }

    /// The longest a command may take: past it the runtime is killed (SIGKILL) and the command
    /// fails with [`Error::TimedOut`]. Unset: no limit but the waiter's own.
    pub fn timeout(mut self, timeout: std::time::Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// `--root DIR`: where the runtime keeps its container state.
    pub fn root(mut self, dir: impl Into<PathBuf>) -> Self {
        self.root = Some(dir.into());
        self
    }

    /// `--log FILE --log-format json`: where the runtime writes its diagnostics; errors are read back
    /// from it. Without a log, error messages come from the runtime's stderr when it is piped.
    pub fn log(mut self, file: impl Into<PathBuf>) -> Self {
        self.log = Some(file.into());
        self
    }

    /// `--systemd-cgroup`.
    pub fn systemd_cgroup(mut self, on: bool) -> Self {
        self.systemd_cgroup = on;
        self
    }

    /// `--debug`.
    pub fn debug(mut self, on: bool) -> Self {
        self.debug = on;
        self
    }

    /// `--rootless true|false`; unset leaves the runtime's own detection.
    pub fn rootless(mut self, rootless: bool) -> Self {
        self.rootless = Some(rootless);
        self
    }

    /// Where `exec --process` and `update --resources` files are written (default: the temp dir).
    pub fn scratch_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.scratch_dir = dir.into();
        self
    }

    /// Global arguments passed as they are, after the options above and before the subcommand
    /// (podman's `--runtime-arg`s).
    pub fn extra_global_args<I: Into<OsString>>(
        mut self,
        extra: impl IntoIterator<Item = I>,
    ) -> Self {
        self.extra_global_args = extra.into_iter().map(Into::into).collect();
        self
    }

    /// Fds 3 to 3 + `count` - 1 of this process are handed to every runtime command open (for
    /// `create --preserve-fds COUNT`); every other fd above stdio stays behind.
    pub fn preserve_fds(mut self, count: u32) -> Self {
        self.preserved_fds = count;
        self
    }

    /// How many fds above stdio every runtime command gets.
    pub fn preserved_fds(&self) -> u32 {
        self.preserved_fds
    }

    /// The runtime binary.
    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// The log file, when one is set.
    pub fn log_file(&self) -> Option<&Path> {
        self.log.as_deref()
    }

    /// The short name used in messages: `runc`, `crun`, ...
    pub fn name(&self) -> String {
        self.binary
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| self.binary.display().to_string())
    }

    /// The global options, in the order the runtime documents them.
    pub fn global_args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = Vec::new();
        if self.debug {
            args.push("--debug".into());
        }
        if let Some(log) = &self.log {
            args.push("--log".into());
            args.push(log.into());
            args.push("--log-format".into());
            args.push("json".into());
        }
        if let Some(root) = &self.root {
            args.push("--root".into());
            args.push(root.into());
        }
        if self.systemd_cgroup {
            args.push("--systemd-cgroup".into());
        }
        if let Some(rootless) = self.rootless {
            args.push("--rootless".into());
            args.push(rootless.to_string().into());
        }
        args.extend(self.extra_global_args.iter().cloned());
        args
    }

    /// The whole argument vector (without the binary) for `subcommand`.
    pub fn argv(&self, subcommand: &Subcommand) -> Vec<OsString> {
        let mut args = self.global_args();
        args.extend(subcommand.args());
        args
    }
}
