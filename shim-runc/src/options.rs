//! One options type per subcommand, and the pure functions that turn them into arguments.
//!
//! The flags mirror runc's own documentation (`runc help <subcommand>`, runc 1.1).

use std::ffi::OsString;
use std::path::PathBuf;

/// `runc create`: create a container from a bundle without starting its process.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CreateOptions {
    /// `--bundle DIR`.
    pub bundle: PathBuf,
    /// `--pid-file FILE`: where the runtime writes the container init's pid.
    pub pid_file: Option<PathBuf>,
    /// `--console-socket SOCK`: receives the pty master when the process has a terminal.
    pub console_socket: Option<PathBuf>,
    /// `--no-pivot`: do not use pivot_root (for a rootfs on a ramdisk).
    pub no_pivot: bool,
    /// `--no-new-keyring`: keep the caller's session keyring.
    pub no_new_keyring: bool,
    /// Arguments passed as they are after the options above (podman's `--runtime-opt`s).
    pub extra_args: Vec<OsString>,
}

impl CreateOptions {
    /// Options for the bundle at `bundle`.
    pub fn new(bundle: impl Into<PathBuf>) -> Self {
        CreateOptions {
            bundle: bundle.into(),
            ..Self::default()
        }
    }

    /// `--pid-file FILE`.
    pub fn pid_file(mut self, file: impl Into<PathBuf>) -> Self {
        self.pid_file = Some(file.into());
        self
    }

    /// `--console-socket SOCK`.
    pub fn console_socket(mut self, socket: impl Into<PathBuf>) -> Self {
        self.console_socket = Some(socket.into());
        self
    }

    /// `--no-pivot`.
    pub fn no_pivot(mut self, on: bool) -> Self {
        self.no_pivot = on;
        self
    }

    /// `--no-new-keyring`.
    pub fn no_new_keyring(mut self, on: bool) -> Self {
        self.no_new_keyring = on;
        self
    }

    /// Arguments passed as they are after the options above.
    pub fn extra_args<I: Into<OsString>>(mut self, extra: impl IntoIterator<Item = I>) -> Self {
        self.extra_args = extra.into_iter().map(Into::into).collect();
        self
    }

    fn push_args(&self, args: &mut Vec<OsString>) {
        push_pair(args, "--bundle", Some(&self.bundle));
        push_pair(args, "--pid-file", self.pid_file.as_ref());
        push_pair(args, "--console-socket", self.console_socket.as_ref());
        push_flag(args, "--no-pivot", self.no_pivot);
        push_flag(args, "--no-new-keyring", self.no_new_keyring);
        args.extend(self.extra_args.iter().cloned());
    }
}

/// `runc run`: create and start in one step.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunOptions {
    /// Everything `create` takes.
    pub create: CreateOptions,
    /// `--detach`: return once the container is started.
    pub detach: bool,
}

/// `runc exec`: run a process in a running container. The process itself is an
/// [`oci_spec::runtime::Process`] given to [`crate::Runc::exec`], passed through `--process FILE`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecOptions {
    /// `--detach`.
    pub detach: bool,
    /// `--pid-file FILE`.
    pub pid_file: Option<PathBuf>,
    /// `--console-socket SOCK`.
    pub console_socket: Option<PathBuf>,
    /// `--tty`: allocate a terminal (overrides the process file's `terminal`).
    pub tty: bool,
    /// Arguments passed as they are after the options above (podman's `--runtime-opt`s).
    pub extra_args: Vec<OsString>,
}

/// `runc kill`: send a signal to the container's init (or all its processes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KillOptions {
    /// The signal number.
    pub signal: i32,
    /// `--all`: every process in the container.
    pub all: bool,
}

impl KillOptions {
    /// Send signal number `signal`.
    pub fn new(signal: i32) -> Self {
        KillOptions { signal, all: false }
    }

    /// `--all`.
    pub fn all(mut self, on: bool) -> Self {
        self.all = on;
        self
    }
}

/// `runc delete`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeleteOptions {
    /// `--force`: kill a running container first.
    pub force: bool,
}

/// `runc checkpoint` / `runc restore` options. Modelled so callers can be written against them;
/// checkpoint and restore need CRIU, which this crate does not drive yet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckpointOptions {
    /// `--image-path DIR`.
    pub image_path: PathBuf,
    /// `--work-path DIR`.
    pub work_path: Option<PathBuf>,
    /// `--leave-running`.
    pub leave_running: bool,
    /// `--tcp-established`.
    pub tcp_established: bool,
    /// `--ext-unix-sk`.
    pub external_unix_sockets: bool,
    /// `--shell-job`.
    pub shell_job: bool,
    /// `--file-locks`.
    pub file_locks: bool,
}

/// One runtime subcommand with its options: the unit the argument vector is built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subcommand {
    /// `create [options] ID`.
    Create { id: String, options: CreateOptions },
    /// `start ID`.
    Start { id: String },
    /// `run [options] ID`.
    Run { id: String, options: RunOptions },
    /// `exec [options] --process FILE ID`.
    Exec {
        id: String,
        options: ExecOptions,
        process_file: PathBuf,
    },
    /// `kill [--all] ID SIGNAL`.
    Kill { id: String, options: KillOptions },
    /// `delete [--force] ID`.
    Delete { id: String, options: DeleteOptions },
    /// `state ID`.
    State { id: String },
    /// `list --format json`.
    List,
    /// `ps --format json ID`.
    Ps { id: String },
    /// `pause ID`.
    Pause { id: String },
    /// `resume ID`.
    Resume { id: String },
    /// `update --resources FILE ID`.
    Update { id: String, resources_file: PathBuf },
    /// `events --stats ID`: one set of statistics.
    Stats { id: String },
    /// `features`.
    Features,
    /// `checkpoint [options] ID` (modelled, not yet run by this crate's helpers).
    Checkpoint {
        id: String,
        options: CheckpointOptions,
    },
}

impl Subcommand {
    /// The subcommand's name as the runtime spells it.
    pub fn name(&self) -> &'static str {
        match self {
            Subcommand::Create { .. } => "create",
            Subcommand::Start { .. } => "start",
            Subcommand::Run { .. } => "run",
            Subcommand::Exec { .. } => "exec",
            Subcommand::Kill { .. } => "kill",
            Subcommand::Delete { .. } => "delete",
            Subcommand::State { .. } => "state",
            Subcommand::List => "list",
            Subcommand::Ps { .. } => "ps",
            Subcommand::Pause { .. } => "pause",
            Subcommand::Resume { .. } => "resume",
            Subcommand::Update { .. } => "update",
            Subcommand::Stats { .. } => "events",
            Subcommand::Features => "features",
            Subcommand::Checkpoint { .. } => "checkpoint",
        }
    }

    /// The container the subcommand is about, if any.
    pub fn container_id(&self) -> Option<&str> {
        match self {
            Subcommand::Create { id, .. }
            | Subcommand::Start { id }
            | Subcommand::Run { id, .. }
            | Subcommand::Exec { id, .. }
            | Subcommand::Kill { id, .. }
            | Subcommand::Delete { id, .. }
            | Subcommand::State { id }
            | Subcommand::Ps { id }
            | Subcommand::Pause { id }
            | Subcommand::Resume { id }
            | Subcommand::Update { id, .. }
            | Subcommand::Stats { id }
            | Subcommand::Checkpoint { id, .. } => Some(id),
            Subcommand::List | Subcommand::Features => None,
        }
    }

    /// The subcommand's arguments: its name, its options, then its positional arguments.
    pub fn args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec![self.name().into()];
        match self {
            Subcommand::Create { options, .. } => options.push_args(&mut args),
            Subcommand::Run { options, .. } => {
                options.create.push_args(&mut args);
                push_flag(&mut args, "--detach", options.detach);
            }
            Subcommand::Exec {
                options,
                process_file,
                ..
            } => {
                push_pair(&mut args, "--process", Some(process_file));
                push_flag(&mut args, "--detach", options.detach);
                push_pair(&mut args, "--pid-file", options.pid_file.as_ref());
                push_pair(
                    &mut args,
                    "--console-socket",
                    options.console_socket.as_ref(),
                );
                push_flag(&mut args, "--tty", options.tty);
                args.extend(options.extra_args.iter().cloned());
            }
            Subcommand::Kill { options, .. } => push_flag(&mut args, "--all", options.all),
            Subcommand::Delete { options, .. } => push_flag(&mut args, "--force", options.force),
            Subcommand::List | Subcommand::Ps { .. } => {
                args.push("--format".into());
                args.push("json".into());
            }
            Subcommand::Update { resources_file, .. } => {
                push_pair(&mut args, "--resources", Some(resources_file));
            }
            Subcommand::Stats { .. } => push_flag(&mut args, "--stats", true),
            Subcommand::Checkpoint { options, .. } => {
                push_pair(&mut args, "--image-path", Some(&options.image_path));
                push_pair(&mut args, "--work-path", options.work_path.as_ref());
                push_flag(&mut args, "--leave-running", options.leave_running);
                push_flag(&mut args, "--tcp-established", options.tcp_established);
                push_flag(&mut args, "--ext-unix-sk", options.external_unix_sockets);
                push_flag(&mut args, "--shell-job", options.shell_job);
                push_flag(&mut args, "--file-locks", options.file_locks);
            }
            Subcommand::Start { .. }
            | Subcommand::State { .. }
            | Subcommand::Pause { .. }
            | Subcommand::Resume { .. }
            | Subcommand::Features => {}
        }
        if let Some(id) = self.container_id() {
            args.push(id.into());
        }
        if let Subcommand::Kill { options, .. } = self {
            args.push(options.signal.to_string().into());
        }
        args
    }
}

fn push_flag(args: &mut Vec<OsString>, flag: &str, on: bool) {
    if on {
        args.push(flag.into());
    }
}

fn push_pair(args: &mut Vec<OsString>, flag: &str, value: Option<&PathBuf>) {
    if let Some(value) = value {
        args.push(flag.into());
        args.push(value.into());
    }
}
