//! The command line. Doc comments here are the `--help` text clap shows, written for a terminal,
//! not for rustdoc: brackets and angle brackets are meant literally.
#![allow(rustdoc::broken_intra_doc_links, rustdoc::invalid_html_tags)]

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

const AFTER_HELP: &str = "\
Examples:
  tether run --id web --bundle /srv/bundles/web
  tether logs -f web
  tether ps
  tether kill web TERM && tether wait web
  tether rm web

Exit codes: 0 success; 1 the command failed; 2 bad input. `tether wait` exits with the container's
exit code (128+N when a signal N killed it).";

/// A container shim: runs a container under an OCI runtime (runc, crun), stays beside it as its
/// parent, keeps its output in a log and its exit code on record.
#[derive(Debug, Parser)]
#[command(name = "tether", version, after_help = AFTER_HELP)]
pub struct Cli {
    /// Where containers' state lives.
    #[arg(long, global = true, default_value = shim_core::DEFAULT_STATE_DIR, env = "TETHER_STATE_DIR")]
    pub state_dir: PathBuf,

    #[command(subcommand)]
    pub command: Command,
}

/// The log formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormatArg {
    /// kubelet's CRI format (`kubectl logs`).
    Cri,
    /// docker's json-file format (`docker logs`).
    JsonFile,
    /// The bytes as written.
    Raw,
}

impl LogFormatArg {
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormatArg::Cri => "cri",
            LogFormatArg::JsonFile => "json-file",
            LogFormatArg::Raw => "raw",
        }
    }
}

/// `ps` output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PsFormat {
    /// A table.
    Table,
    /// A JSON array of states.
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start a container under a new shim daemon and print its pid.
    #[command(
        after_help = "Example:\n  tether run --id web --bundle ./bundle --log /var/log/web.log --log-format json-file"
    )]
    Run(RunArgs),
    /// List containers.
    Ps {
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: PsFormat,
    },
    /// Print a container's state as JSON.
    State {
        /// The container id.
        id: String,
    },
    /// Print a container's output from its log.
    #[command(after_help = "Example:\n  tether logs --tail 20 -f web")]
    Logs {
        /// The container id.
        id: String,
        /// Keep printing new output until the container exits.
        #[arg(short, long)]
        follow: bool,
        /// Only the last N lines.
        #[arg(long, value_name = "N")]
        tail: Option<usize>,
        /// Prefix each line with the time it was logged.
        #[arg(short, long)]
        timestamps: bool,
    },
    /// Send a signal to a container's init process (default TERM).
    #[command(after_help = "Example:\n  tether kill web KILL\n  tether kill --all web 15")]
    Kill {
        /// The container id.
        id: String,
        /// A signal name or number.
        #[arg(default_value = "TERM")]
        signal: String,
        /// Signal every process of the container.
        #[arg(long)]
        all: bool,
    },
    /// Wait until a container exits; print and exit with its exit code.
    Wait {
        /// The container id.
        id: String,
    },
    /// Freeze a container's processes.
    Pause {
        /// The container id.
        id: String,
    },
    /// Thaw a paused container.
    Resume {
        /// The container id.
        id: String,
    },
    /// Delete a stopped container and its shim daemon (-f: kill it first if it runs).
    Rm {
        /// The container id.
        id: String,
        /// Kill a running container first.
        #[arg(short, long)]
        force: bool,
    },
    /// Run a command in a running container and exit with its exit code.
    #[command(
        after_help = "Examples:\n  tether exec web -- cat /etc/hostname\n  tether exec -it web sh\n  echo data | tether exec -i web -- wc -c\n  tether exec --timeout 5 web -- sleep 100\n\nExit codes: the command's; 126 not executable; 127 not found; 128+N killed by signal N;\n124 killed by --timeout."
    )]
    Exec(ExecArgs),
    /// Join a container's stdio: its output to this terminal, this terminal's input to it.
    #[command(
        after_help = "Example:\n  tether run -i -t --id box --bundle ./bundle && tether attach box"
    )]
    Attach {
        /// The container id.
        id: String,
        /// Only watch: do not forward stdin.
        #[arg(long)]
        no_stdin: bool,
    },
    /// The shim daemon itself (started by `tether run`; not for people).
    #[command(hide = true)]
    Daemon {
        /// The daemon's configuration, as JSON.
        #[arg(long)]
        config: String,
    },
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The container id: [A-Za-z0-9][A-Za-z0-9_.-]{0,127}.
    #[arg(long)]
    pub id: String,
    /// The OCI bundle directory (holding config.json).
    #[arg(long)]
    pub bundle: PathBuf,
    /// The container's log file (default: <state-dir>/<id>/container.log).
    #[arg(long)]
    pub log: Option<PathBuf>,
    /// The log format.
    #[arg(long, value_enum, default_value = "cri")]
    pub log_format: LogFormatArg,
    /// Rotate the log when it reaches this many bytes.
    #[arg(long, value_name = "BYTES", value_parser = clap::value_parser!(u64).range(4096..))]
    pub log_max_size: Option<u64>,
    /// How many log files to keep when rotating, the live one included.
    #[arg(long, value_name = "N", default_value = "5", value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub log_max_files: u32,
    /// The OCI runtime: runc, crun, or a path.
    #[arg(long, default_value = "runc")]
    pub runtime: PathBuf,
    /// The runtime's --root (default: the runtime's own).
    #[arg(long)]
    pub runtime_root: Option<PathBuf>,
    /// The longest one runtime command may take; a runtime still running then is killed (and a
    /// start that did not finish is undone).
    #[arg(long, value_name = "SECS", default_value_t = crate::config::DEFAULT_RUNTIME_TIMEOUT_SECS,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub runtime_timeout: u64,
    /// Write the container's pid here.
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    /// Keep the container's stdin open for `tether attach`.
    #[arg(short, long)]
    pub interactive: bool,
    /// Give the container a terminal (the bundle's process.terminal must be true).
    #[arg(short, long)]
    pub tty: bool,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// The container id.
    pub id: String,
    /// Forward this terminal's stdin to the command.
    #[arg(short, long)]
    pub interactive: bool,
    /// Give the command a terminal.
    #[arg(short, long)]
    pub tty: bool,
    /// Start it and print its exec id; its output is discarded.
    #[arg(short, long)]
    pub detach: bool,
    /// Set an environment variable (KEY=VALUE); repeatable.
    #[arg(short, long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Run as UID[:GID].
    #[arg(short, long)]
    pub user: Option<String>,
    /// Working directory inside the container.
    #[arg(short, long = "workdir", value_name = "DIR")]
    pub workdir: Option<String>,
    /// Kill the command (and its children) after this many seconds.
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<u64>,
    /// The command and its arguments.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}
