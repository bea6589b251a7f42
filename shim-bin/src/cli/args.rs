//! The command line. Doc comments here are the `--help` text clap shows, written for a terminal,
//! not for rustdoc: brackets and angle brackets are meant literally.
#![allow(rustdoc::broken_intra_doc_links, rustdoc::invalid_html_tags)]

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

const AFTER_HELP: &str = "\
Examples:
  tether run --id web --bundle /srv/bundles/web
  tether logs -f --since 10m web
  tether ps
  tether stop -t 5 web
  tether rm web

Exit codes: 0 success; 125 tether itself failed (bad input, no such container, a shim that does
not answer). `wait` and `exec` exit with the command's own code: 126 it cannot be invoked, 127 it
was not found, 128+N a signal N killed it.";

/// The version and the commit it was built from.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("TETHER_COMMIT"),
    ")"
);

/// A container shim: runs a container under an OCI runtime (runc, crun), stays beside it as its
/// parent, keeps its output in a log and its exit code on record.
#[derive(Debug, Parser)]
#[command(name = "tether", version = VERSION, after_help = AFTER_HELP)]
pub struct Cli {
    /// Where containers' state lives.
    #[arg(long, global = true, default_value = shim_core::DEFAULT_STATE_DIR, env = "TETHER_STATE_DIR")]
    pub state_dir: PathBuf,

    #[command(subcommand)]
    pub command: Command,
}

/// The container's network (`run --network`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum NetworkArg {
    /// Only its own loopback.
    None,
    /// The host's network, shared.
    Host,
    /// An address on tether's bridge (tether0, 10.89.0.0/16) through the CNI plugins; -p
    /// publishes its ports.
    Bridge,
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
    /// Run a container under a new shim daemon: in the foreground (its output here, its exit code
    /// tether's), or with -d in the background (its id printed).
    #[command(
        after_help = "Examples:\n  tether run --rm --rootfs ./rootfs hello -- echo hi\n  tether run -d --rootfs ./rootfs -e MODE=prod -v /srv/data:/data --memory 256m web -- httpd -f\n  tether run -d --bundle ./bundle --log /var/log/web.log --log-format json-file web\n\nIn the foreground, Ctrl-C sends SIGINT to the container and a second one SIGKILL; tether\nexits with the container's exit code."
    )]
    Run(Box<RunArgs>),
    /// Write a default config.json (runc's defaults) into a bundle directory.
    #[command(after_help = "Example:\n  mkdir -p bundle/rootfs && tether spec --bundle bundle")]
    Spec {
        /// The bundle directory.
        #[arg(long, default_value = ".")]
        bundle: PathBuf,
    },
    /// List containers.
    #[command(
        after_help = "Examples:\n  tether ps\n  tether ps -q | xargs tether rm -f\n  tether ps --format json"
    )]
    Ps {
        /// Every container (accepted as docker's: ps lists them all, stopped ones too).
        #[arg(short, long)]
        all: bool,
        /// Output format (json keeps RFC 3339 times).
        #[arg(long, value_enum, default_value = "table")]
        format: PsFormat,
        /// Only the ids.
        #[arg(short, long)]
        quiet: bool,
        /// Show ids whole (ids over 32 characters are cut to 12 otherwise; any unique prefix names
        /// a container).
        #[arg(long)]
        no_trunc: bool,
    },
    /// Print containers' state as JSON (several: an array).
    State {
        /// The container ids.
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Print containers' state, or the fields a template names (docker's subset).
    #[command(
        after_help = "Examples:\n  tether inspect web\n  tether inspect --format '{{.State.Pid}}' web\n  tether inspect -f '{{.Id}} {{.State.ExitCode}}' web db\n  tether inspect -f '{{.exit.signal}}' web      (a path into tether's state JSON)"
    )]
    Inspect {
        /// A template: {{.Id}}, {{.State.Pid}}, {{.State.ExitCode}}, {{.State.Status}},
        /// {{.State.Running}}, {{.State.OOMKilled}}, {{.Created}}, {{.LogPath}}, {{json .}}, or
        /// a path into the state's JSON ({{.exit.code}}).
        #[arg(short, long, value_name = "TEMPLATE")]
        format: Option<String>,
        /// The container ids.
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Print a container's output from its log.
    #[command(
        after_help = "Examples:\n  tether logs --tail 20 -f web\n  tether logs --since 10m --until 2m web\n  tether logs --since 2026-12-02T10:00:00Z -t web"
    )]
    Logs {
        /// The container id.
        id: String,
        /// Keep printing new output until the container exits.
        #[arg(short, long)]
        follow: bool,
        /// Only the last N lines (`all`: every line).
        #[arg(short = 'n', long, value_name = "N|all", value_parser = parse_tail)]
        tail: Option<Tail>,
        /// Only lines logged at or after this time: RFC 3339, or a duration ago (10m, 1h).
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
        /// Only lines logged before this time: RFC 3339, or a duration ago.
        #[arg(long, value_name = "TIME")]
        until: Option<String>,
        /// Prefix each line with the time it was logged.
        #[arg(short, long)]
        timestamps: bool,
    },
    /// Send a signal to containers' init processes (default KILL, as docker).
    #[command(
        after_help = "Examples:\n  tether kill web\n  tether kill -s TERM web db\n  tether kill web HUP      (one id, then a signal: the older form)\n  tether kill --all -s 15 web"
    )]
    Kill {
        /// The signal: a name (TERM, SIGTERM) or a number.
        #[arg(short, long, value_name = "SIG")]
        signal: Option<String>,
        /// Signal every process of the container.
        #[arg(long)]
        all: bool,
        /// The container ids (or one id and a signal).
        #[arg(required = true, value_name = "ID")]
        ids: Vec<String>,
    },
    /// Stop containers: TERM, then KILL once the grace period is over.
    #[command(
        after_help = "Examples:\n  tether stop web\n  tether stop -t 2 web db\n  tether stop -t 1m30s web"
    )]
    Stop {
        /// The grace period: seconds, or a duration (10s, 1m).
        #[arg(short = 't', long = "time", value_name = "DURATION", default_value = "10",
              value_parser = parse_grace)]
        time: std::time::Duration,
        /// The container ids.
        #[arg(required = true, value_name = "ID")]
        ids: Vec<String>,
    },
    /// Wait until containers exit and print their exit codes; with one, exit with its code.
    Wait {
        /// The container ids.
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Freeze containers' processes.
    Pause {
        /// The container ids.
        #[arg(required = true, value_name = "ID")]
        ids: Vec<String>,
    },
    /// Thaw paused containers.
    #[command(visible_alias = "unpause")]
    Resume {
        /// The container ids.
        #[arg(required = true, value_name = "ID")]
        ids: Vec<String>,
    },
    /// Delete stopped containers and their shim daemons (-f: kill them first if they run).
    Rm {
        /// The container ids.
        #[arg(required = true, value_name = "ID")]
        ids: Vec<String>,
        /// Kill a running container first.
        #[arg(short, long)]
        force: bool,
    },
    /// Show what running containers use: CPU, memory against its limit, tasks (read from their
    /// cgroups, v1 or v2, every second).
    #[command(
        after_help = "Examples:\n  tether stats\n  tether stats --no-stream web\n  tether stats --no-stream --format json web db"
    )]
    Stats {
        /// The containers (every running one when none is named).
        ids: Vec<String>,
        /// Show one round, then exit.
        #[arg(long)]
        no_stream: bool,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: PsFormat,
    },
    /// Print what happens to containers from now on, as JSON lines: start, pause, resume, oom,
    /// exit (with its code), delete.
    #[command(after_help = "Example:\n  tether events | grep '\"exit\"'")]
    Events,
    /// Show a container's processes (with ps options: the host's `ps` with them, only the rows
    /// of the container's processes, as docker top does).
    #[command(after_help = "Examples:\n  tether top web\n  tether top web -o pid,user,rss,args")]
    Top {
        /// The container id.
        id: String,
        /// Options for ps (its output needs a PID column).
        #[arg(
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "PS_OPTIONS"
        )]
        ps_options: Vec<String>,
    },
    /// Make a container's shim reopen its log file (after logrotate moved it away).
    #[command(
        after_help = "Example (logrotate's create mode, after the move):\n  tether reopen-log web"
    )]
    ReopenLog {
        /// The container id.
        id: String,
    },
    /// Print a shell completion script.
    #[command(
        after_help = "Examples:\n  tether completion bash > /etc/bash_completion.d/tether\n  tether completion zsh > \"${fpath[1]}/_tether\""
    )]
    Completion {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Write man pages (tether.1, tether-run.1, ...) into a directory.
    #[command(hide = true)]
    Man {
        /// Where they go.
        dir: PathBuf,
    },
    /// Run a command in a running container and exit with its exit code.
    #[command(
        after_help = "Examples:\n  tether exec web -- cat /etc/hostname\n  tether exec -it web sh\n  echo data | tether exec -i web -- wc -c\n  tether exec --timeout 5 web -- sleep 100\n\nExit codes: the command's; 126 not executable; 127 not found; 128+N killed by signal N;\n124 killed by --timeout."
    )]
    Exec(ExecArgs),
    /// Join a container's stdio: its output to this terminal, this terminal's input to it.
    #[command(
        after_help = "Example:\n  tether run -d -i -t --rootfs ./rootfs box -- sh && tether attach box"
    )]
    Attach {
        /// The container id.
        id: String,
        /// Only watch: do not forward stdin.
        #[arg(long)]
        no_stdin: bool,
        /// The keys that detach, leaving the container running (with a terminal).
        #[arg(long, value_name = "KEYS", default_value = crate::cli::detach::DEFAULT, value_parser = crate::cli::detach::DetachKeys::parse)]
        detach_keys: crate::cli::detach::DetachKeys,
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
    /// The container id: [A-Za-z0-9][A-Za-z0-9_.-]{0,127} (or give it as ID; without one, 12
    /// random hex digits).
    #[arg(
        long = "id",
        visible_alias = "name",
        value_name = "ID",
        conflicts_with = "name"
    )]
    pub id_flag: Option<String>,
    /// The container id.
    #[arg(value_name = "ID")]
    pub name: Option<String>,
    /// The command and its arguments (with --rootfs; the default is `sh`).
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<String>,
    /// Run in the background: print the container's id and return (the shim stays).
    #[arg(short, long)]
    pub detach: bool,
    /// Remove the container once it exits (with -d, -i or -t, its daemon removes it).
    #[arg(long)]
    pub rm: bool,
    /// Remove a container of this id first, running or not (as podman's --replace): a service
    /// that restarts after its shim died starts again.
    #[arg(long)]
    pub replace: bool,
    /// The OCI bundle directory (holding config.json).
    #[arg(long, required_unless_present = "rootfs", conflicts_with = "rootfs")]
    pub bundle: Option<PathBuf>,
    /// A root filesystem to run without writing config.json: tether makes the bundle (runc's
    /// default spec and the flags below) under the container's state dir. DIR:O: an overlay on
    /// DIR, which stays as it is; the container's changes live in its state dir and go with it.
    #[arg(long, value_name = "DIR[:O]")]
    pub rootfs: Option<PathBuf>,
    #[command(flatten)]
    pub spec: RootfsArgs,
    /// The container's log file (default: <state-dir>/<id>/container.log).
    #[arg(long)]
    pub log: Option<PathBuf>,
    /// The log format.
    #[arg(long, value_enum, default_value = "cri")]
    pub log_format: LogFormatArg,
    /// Rotate the log when it reaches this size: bytes, or 64k, 10m, 1g (at least 4k).
    #[arg(long, value_name = "SIZE", value_parser = parse_log_size)]
    pub log_max_size: Option<u64>,
    /// How many log files to keep when rotating, the live one included.
    #[arg(long, value_name = "N", default_value = "5", value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub log_max_files: u32,
    /// The OCI runtime: runc, crun, or a path.
    #[arg(long, default_value = "runc", env = "TETHER_RUNTIME")]
    pub runtime: PathBuf,
    /// The runtime's --root (default: the runtime's own).
    #[arg(long, env = "TETHER_RUNTIME_ROOT")]
    pub runtime_root: Option<PathBuf>,
    /// The longest one runtime command may take (10, 30s, 2m; 1s to 1h); a runtime still running
    /// then is killed with everything it started (and a start that did not finish is undone).
    #[arg(long, value_name = "DURATION", default_value_t = crate::common::config::DEFAULT_RUNTIME_TIMEOUT_SECS,
          value_parser = parse_runtime_timeout)]
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

/// The heading of `run --help` over the flags of [`RootfsArgs`].
const ROOTFS_HEADING: &str = "With --rootfs (refused with --bundle: its config.json says it)";

/// What `run --rootfs` puts in the spec it makes. With `--bundle` they are refused: the bundle's
/// config.json says all of it.
#[derive(Debug, Args, Default)]
pub struct RootfsArgs {
    /// Set an environment variable (KEY=VALUE, or KEY for this shell's value); repeatable.
    #[arg(short, long = "env", value_name = "KEY[=VALUE]", help_heading = ROOTFS_HEADING)]
    pub env: Vec<String>,
    /// Read environment variables from a file (one KEY=VALUE or KEY a line); repeatable.
    #[arg(long = "env-file", value_name = "FILE", help_heading = ROOTFS_HEADING)]
    pub env_files: Vec<PathBuf>,
    /// Bind-mount a host path: SRC:DST[:ro]; repeatable.
    #[arg(
        short,
        long = "volume",
        value_name = "SRC:DST[:ro]",
        help_heading = ROOTFS_HEADING
    )]
    pub volumes: Vec<String>,
    /// Working directory inside the container.
    #[arg(short, long = "workdir", value_name = "DIR", help_heading = ROOTFS_HEADING)]
    pub workdir: Option<String>,
    /// Run as USER[:GROUP]: numbers, or names of the rootfs's /etc/passwd and /etc/group.
    #[arg(short, long, help_heading = ROOTFS_HEADING)]
    pub user: Option<String>,
    /// A memory limit: bytes, or 64m, 1g.
    #[arg(long, value_name = "SIZE", value_parser = crate::common::units::parse_size, help_heading = ROOTFS_HEADING)]
    pub memory: Option<u64>,
    /// CPUs it may use (1.5: one and a half; 0: no limit; at most the host's).
    #[arg(long, value_name = "N", help_heading = ROOTFS_HEADING)]
    pub cpus: Option<f64>,
    /// At most this many processes (0 or -1: no limit).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(i64).range(-1..), help_heading = ROOTFS_HEADING, allow_negative_numbers = true)]
    pub pids_limit: Option<i64>,
    /// The container's hostname.
    #[arg(long, help_heading = ROOTFS_HEADING)]
    pub hostname: Option<String>,
    /// An empty tmpfs at PATH, gone with the container: PATH[:OPTIONS] (size=64m,mode=1777);
    /// repeatable. With --read-only: where it may write.
    #[arg(long, value_name = "PATH[:OPTIONS]", help_heading = ROOTFS_HEADING)]
    pub tmpfs: Vec<String>,
    /// Mount the root filesystem read-only.
    #[arg(long, help_heading = ROOTFS_HEADING)]
    pub read_only: bool,
    /// The network: none (the default: only loopback), host, or bridge.
    #[arg(long, value_enum, value_name = "MODE", help_heading = ROOTFS_HEADING)]
    pub network: Option<NetworkArg>,
    /// Publish a port on the host: [IP:]HOST:CONTAINER[/tcp|udp] (implies --network bridge);
    /// repeatable.
    #[arg(short = 'p', long = "publish", value_name = "[IP:]HOST:CONTAINER", value_parser = parse_publish, help_heading = ROOTFS_HEADING)]
    pub publish: Vec<crate::shim::network::Publish>,
    /// Run a tiny init as PID 1 that passes signals on and reaps orphans (tether's own static
    /// binary, mounted read-only at /dev/tether-init): a shell or httpd then stops on TERM.
    #[arg(long, help_heading = ROOTFS_HEADING)]
    pub init: bool,
}

impl RootfsArgs {
    /// The first of these flags given, as it is typed.
    pub fn first_given(&self) -> Option<&'static str> {
        [
            (!self.env.is_empty(), "-e/--env"),
            (!self.env_files.is_empty(), "--env-file"),
            (!self.volumes.is_empty(), "-v/--volume"),
            (self.workdir.is_some(), "-w/--workdir"),
            (self.user.is_some(), "-u/--user"),
            (self.memory.is_some(), "--memory"),
            (self.cpus.is_some(), "--cpus"),
            (self.pids_limit.is_some(), "--pids-limit"),
            (self.hostname.is_some(), "--hostname"),
            (self.read_only, "--read-only"),
            (!self.tmpfs.is_empty(), "--tmpfs"),
            (self.init, "--init"),
            (self.network.is_some(), "--network"),
            (!self.publish.is_empty(), "-p/--publish"),
        ]
        .into_iter()
        .find_map(|(given, flag)| given.then_some(flag))
    }
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
    /// Set an environment variable (KEY=VALUE, or KEY for this shell's value); repeatable.
    #[arg(short, long = "env", value_name = "KEY[=VALUE]")]
    pub env: Vec<String>,
    /// Read environment variables from a file (one KEY=VALUE or KEY a line); repeatable.
    #[arg(long = "env-file", value_name = "FILE")]
    pub env_files: Vec<PathBuf>,
    /// Run as USER[:GROUP]: numbers, or names of the container's /etc/passwd and /etc/group.
    #[arg(short, long)]
    pub user: Option<String>,
    /// Working directory inside the container.
    #[arg(short, long = "workdir", value_name = "DIR")]
    pub workdir: Option<String>,
    /// Kill the command (and its children) after this long (5, 30s, 2m).
    #[arg(long, value_name = "DURATION", value_parser = parse_exec_timeout)]
    pub timeout: Option<u64>,
    /// The keys that detach, leaving the command running (with -i -t).
    #[arg(long, value_name = "KEYS", default_value = crate::cli::detach::DEFAULT, value_parser = crate::cli::detach::DetachKeys::parse)]
    pub detach_keys: crate::cli::detach::DetachKeys,
    /// The command and its arguments.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

/// `--tail`: a number of lines, or all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tail {
    All,
    Last(usize),
}

fn parse_tail(text: &str) -> Result<Tail, String> {
    if text == "all" {
        return Ok(Tail::All);
    }
    text.parse()
        .map(Tail::Last)
        .map_err(|_| format!("{text:?} is not a number of lines or `all`"))
}

fn parse_grace(text: &str) -> Result<std::time::Duration, String> {
    let grace = crate::common::units::parse_duration(text)?;
    if grace > std::time::Duration::from_secs(24 * 3600) {
        return Err(format!("{text:?}: a grace period of at most 24h"));
    }
    Ok(grace)
}

/// `exec --timeout`: whole seconds (a fraction counts as a second more), 1 s at least.
fn parse_exec_timeout(text: &str) -> Result<u64, String> {
    let timeout = crate::common::units::parse_duration(text)?;
    let seconds = timeout.as_secs() + u64::from(timeout.subsec_nanos() > 0);
    if !(1..=shim_core::protocol::MAX_EXEC_TIMEOUT_SECS).contains(&seconds) {
        return Err(format!("{text:?}: a timeout of 1s to 10 years"));
    }
    Ok(seconds)
}

/// Whole seconds, 1 to 3600 (a fraction counts as a second more).
fn parse_runtime_timeout(text: &str) -> Result<u64, String> {
    let timeout = crate::common::units::parse_duration(text)?;
    let seconds = timeout.as_secs() + u64::from(timeout.subsec_nanos() > 0);
    if !(1..=3600).contains(&seconds) {
        return Err(format!("{text:?}: a runtime timeout of 1s to 1h"));
    }
    Ok(seconds)
}

fn parse_log_size(text: &str) -> Result<u64, String> {
    let size = crate::common::units::parse_size(text)?;
    if size < 4096 {
        return Err(format!("{text:?}: a log of at least 4k (4096 bytes)"));
    }
    Ok(size)
}

fn parse_publish(text: &str) -> Result<crate::shim::network::Publish, String> {
    text.parse()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn the_runtime_timeout_takes_units_and_is_bounded() {
        assert_eq!(parse_runtime_timeout("5s"), Ok(5));
        assert_eq!(parse_runtime_timeout("60"), Ok(60));
        assert_eq!(parse_runtime_timeout("2m"), Ok(120));
        assert_eq!(parse_runtime_timeout("1500ms"), Ok(2));
        for bad in ["0", "0s", "2h", "soon"] {
            assert!(parse_runtime_timeout(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sizes_durations_and_tails_parse_as_typed() {
        let cli = Cli::try_parse_from([
            "tether",
            "run",
            "--id",
            "w",
            "--bundle",
            "b",
            "--log-max-size",
            "10m",
        ])
        .unwrap();
        let Command::Run(args) = cli.command else {
            panic!("not run")
        };
        assert_eq!(args.log_max_size, Some(10 << 20));
        assert!(Cli::try_parse_from([
            "tether",
            "run",
            "--id",
            "w",
            "--bundle",
            "b",
            "--log-max-size",
            "1k"
        ])
        .is_err());
        let cli = Cli::try_parse_from(["tether", "stop", "-t", "2m", "a", "b"]).unwrap();
        let Command::Stop { time, ids } = cli.command else {
            panic!("not stop")
        };
        assert_eq!((time.as_secs(), ids.len()), (120, 2));
        let cli = Cli::try_parse_from(["tether", "logs", "--tail", "all", "w"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Logs {
                tail: Some(Tail::All),
                ..
            }
        ));
        assert!(Cli::try_parse_from(["tether", "logs", "--tail", "some", "w"]).is_err());
    }
}
