//! `conmon`: tether as podman's container monitor, the same binary under the name podman runs
//! (`conmon_path` in containers.conf; `cargo xtask install` makes `libexec/tether/conmon`).
//!
//! Life of a container's monitor, as podman 4.3 expects it (docs/podman.md):
//!
//! 1. the command line is read ([`ConmonArgs`]); `--version` answers podman's probe;
//! 2. the monitor waits for podman's start byte on `_OCI_STARTPIPE` (podman moves it into its
//!    cgroup first, so nothing forks before);
//! 3. it forks: the first process writes the second's pid to `--conmon-pidfile` and exits, which
//!    podman waits for; the second leaves podman's session and becomes a subreaper;
//! 4. the second opens the attach socket and the ctl fifo, runs `runtime create`, and tells podman
//!    the container's pid on `_OCI_SYNCPIPE` (`{"data": PID}`, or `-1` and the runtime's words);
//! 5. podman starts the container itself; the supervisor copies its output into the k8s-file log
//!    and to attach clients, reaps it, and once its output is drained records the exit;
//! 6. the exit file goes to `--exit-dir`, and the exit command (podman's `container cleanup`) runs.

use crate::front::conmon::args::ConmonArgs;
use crate::front::conmon::{files, front_ref, ConmonFront, HOOKS};
use crate::shim::diag::Diag;
use crate::shim::{Listing, Parts, RunHow, RunSpec, Supervisor};
use shim_core::ProcessKey;
use shim_io::{LogFormat, LogSink, Rotation, SinkOptions};
use shim_runc::Runc;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The conmon release whose behaviour this monitor matches; podman checks the format and a
/// minimum of 2.0.1.
pub const CONMON_VERSION: &str = "2.1.6";

/// The longest the runtime's create may take.
const RUNTIME_TIMEOUT: Duration = Duration::from_secs(240);

/// Whether the binary runs under conmon's name.
pub fn invoked_as_conmon(argv0: &str) -> bool {
    Path::new(argv0).file_name().and_then(|n| n.to_str()) == Some("conmon")
}

/// Where the container's output goes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum LogDriver {
    /// podman's k8s-file: the CRI format at this path.
    K8sFile(PathBuf),
    /// Nowhere but attach clients.
    None,
    /// Not through the monitor at all: the container gets the monitor's own stdio (podman's).
    Passthrough,
}

impl LogDriver {
    /// `-l` values, as conmon reads them: `k8s-file:PATH`, a bare `PATH`, `none`/`off`/`null`.
    fn parse(values: &[String]) -> Result<LogDriver, String> {
        if values.is_empty() {
            return Err("Log driver not provided. Use --log-path".into());
        }
        let mut driver = LogDriver::None;
        for value in values {
            match value.split_once(':') {
                None if matches!(value.as_str(), "none" | "off" | "null") => {}
                None if value.is_empty() => return Err("log-path must not be empty".into()),
                None | Some(("passthrough", _))
                    if value.split(':').next() == Some("passthrough") =>
                {
                    if [0, 1, 2].iter().any(|fd| nix::unistd::isatty(*fd).unwrap_or(false)) {
                        return Err("cannot use a tty with passthrough logging mode to prevent attacks via TIOCSTI".into());
                    }
                    driver = LogDriver::Passthrough;
                }
                None if value == "journald" => {
                    return Err(
                        "log driver journald is not supported by tether's conmon (k8s-file, none and passthrough are)"
                            .into(),
                    )
                }
                None => driver = LogDriver::K8sFile(value.into()),
                Some(("k8s-file", "")) => return Err("k8s-file requires a filename".into()),
                Some(("k8s-file", path)) => driver = LogDriver::K8sFile(path.into()),
                Some(("none" | "off" | "null", _)) => {}
                Some(("journald", _)) => {
                    return Err(
                        "log driver journald is not supported by tether's conmon (k8s-file, none and passthrough are)"
                            .into(),
                    )
                }
                Some(("", path)) => driver = LogDriver::K8sFile(path.into()),
                Some((other, _)) => return Err(format!("No such log driver {other}")),
            }
        }
        Ok(driver)
    }
}

/// Runs the conmon command line; returns the exit code.
pub fn main(argv: &[String]) -> u8 {
    let args = match ConmonArgs::parse(argv) {
        Ok(args) => args,
        Err(message) => {
            // conmon's option parser reports on stdout.
            println!("conmon: {message}");
            return 1;
        }
    };
    if args.version {
        println!(
            "conmon version {CONMON_VERSION}\ncommit: {}",
            env!("TETHER_COMMIT")
        );
        return 0;
    }
    let checked = args.validate().and_then(|()| {
        if args.restore.is_some() {
            return Err("--restore is not supported by tether's conmon".into());
        }
        if args.log_tag.is_some() {
            return Err("k8s-file doesn't support --log-tag".into());
        }
        let log = LogDriver::parse(&args.log_paths)?;
        if log == LogDriver::Passthrough && args.terminal {
            return Err("cannot use a tty with passthrough logging mode".into());
        }
        Ok(log)
    });
    let log = match checked {
        Ok(log) => log,
        Err(message) => {
            eprintln!("conmon: {message}");
            return 1;
        }
    };
    monitor(&args, &log)
}

/// podman's pipes, at the numbers its environment names.
struct Pipes {
    sync: Option<OwnedFd>,
    start: Option<OwnedFd>,
    /// An exec's: told `{"data": 0}` once its attach socket is there.
    attach: Option<OwnedFd>,
}

impl Pipes {
    fn from_env() -> Pipes {
        let take = |name: &str| {
            std::env::var(name)
                .ok()
                .and_then(|n| n.parse().ok())
                .and_then(crate::common::sys::inherited_fd)
        };
        Pipes {
            sync: take("_OCI_SYNCPIPE"),
            start: take("_OCI_STARTPIPE"),
            attach: take("_OCI_ATTACHPIPE"),
        }
    }

    /// podman's go-ahead: one byte. False when podman went away instead.
    fn wait_for_start(&mut self) -> bool {
        let Some(start) = &self.start else {
            return true;
        };
        let mut byte = [0u8; 1];
        let mut start = std::fs::File::from(start.try_clone().expect("dup the start pipe"));
        loop {
            match start.read(&mut byte) {
                Ok(1) => return true,
                Ok(_) => return false,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
    }

    /// One JSON line on the sync pipe: `{"data": N}` and, for a failure, its message.
    fn sync(&mut self, data: i64, message: Option<&str>) {
        write_line(self.sync.as_ref(), data, message);
    }

    /// `{"data": 0}` on the attach pipe: an exec's attach socket is ready.
    fn attach_ready(&mut self) {
        write_line(self.attach.take().as_ref(), 0, None);
    }
}

/// One JSON line `{"data": N}` (and a failure's message) on one of podman's pipes.
fn write_line(pipe: Option<&OwnedFd>, data: i64, message: Option<&str>) {
    let Some(pipe) = pipe else {
        return;
    };
    let mut line = serde_json::json!({ "data": data });
    if let Some(message) = message {
        // conmon sends at most the first 8191 bytes of the runtime's words.
        let mut end = message.len().min(8191);
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        line["message"] = message[..end].into();
    }
    let mut bytes = line.to_string().into_bytes();
    bytes.push(b'\n');
    if let Ok(fd) = pipe.try_clone() {
        let _ = std::fs::File::from(fd).write_all(&bytes);
    }
}

/// A container's monitor, or an exec session's (`-e`): the same life but for the runtime
/// command, the attach handshake of an exec, and the exit told on the sync pipe too.
fn monitor(args: &ConmonArgs, log: &LogDriver) -> u8 {
    let mut pipes = Pipes::from_env();
    if !pipes.wait_for_start() {
        eprintln!("conmon: the start pipe closed before the start byte");
        return 1;
    }
    if !args.exec_attach {
        pipes.start = None;
    }
    match crate::common::sys::fork_alone() {
        Err(e) => {
            eprintln!("conmon: {e}");
            return 1;
        }
        Ok(crate::common::sys::Forked::Parent { child }) => {
            if let Some(pidfile) = &args.conmon_pidfile {
                if let Err(e) = files::write_number(pidfile, child.into()) {
                    eprintln!("conmon: {}: {e}", pidfile.display());
                    return 1;
                }
            }
            return 0;
        }
        Ok(crate::common::sys::Forked::Child) => {}
    }
    let cid = args.cid.clone().unwrap_or_default();
    let diag = Diag::new(&cid, args.log_level.as_deref() == Some("debug"));
    let _ = nix::unistd::setsid();
    if *log != LogDriver::Passthrough {
        null_stdio();
    }
    let mut supervisor = match start(args, log, &mut pipes, diag.clone()) {
        Ok(supervisor) => supervisor,
        Err(message) => {
            diag.warn(format_args!("{message}"));
            pipes.sync(-1, Some(&message));
            return 1;
        }
    };
    supervisor.run();
    let exit_code = front_ref(&supervisor.door).and_then(|front| front.exit_code);
    if let Some(door) = supervisor.take_door() {
        door.unregister();
    }
    let code = exit_code.unwrap_or(-1);
    if let (Some(dir), Some(cid)) = (&args.exit_dir, &args.cid) {
        if let Err(e) = files::write_number(&dir.join(cid), code.into()) {
            diag.warn(format_args!("exit file: {e}"));
        }
    }
    if args.exec {
        // podman has usually closed its end by now (it reads the exit file): EPIPE is expected.
        pipes.sync(code.into(), None);
    }
    drop(supervisor);
    run_exit_command(args, &diag);
    u8::try_from(code & 0xff).unwrap_or(1)
}

/// The monitor's stdio is /dev/null: podman's pipes must see their end (with `-t`, podman reads
/// its stderr pipe to EOF), and nothing the monitor says later can fail on them.
fn null_stdio() {
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        for fd in 0..=2 {
            let _ = nix::unistd::dup2(std::os::fd::AsRawFd::as_raw_fd(&null), fd);
        }
    }
}

/// The supervisor around the created container, its door open and podman told the pid.
fn start(
    args: &ConmonArgs,
    log: &LogDriver,
    pipes: &mut Pipes,
    diag: Diag,
) -> Result<Supervisor, String> {
    let cid = args.cid.clone().unwrap_or_default();
    let bundle = match &args.bundle {
        Some(bundle) => bundle.clone(),
        None => std::env::current_dir().map_err(|e| format!("working directory: {e}"))?,
    };
    let (reaper, poll) = super::reaper_and_poll()?;
    let (log_path, options) = match log {
        LogDriver::K8sFile(path) => {
            let mut options = SinkOptions::new(LogFormat::Cri);
            if let Some(max) = args.log_size_max.filter(|max| *max > 0) {
                // conmon's --log-size-max: the log starts over, nothing older is kept.
                options = options.rotation(Rotation {
                    max_size: max as u64,
                    max_files: 1,
                });
            }
            (path.clone(), options)
        }
        LogDriver::None | LogDriver::Passthrough => {
            (PathBuf::from("/dev/null"), SinkOptions::new(LogFormat::Raw))
        }
    };
    let sink = LogSink::open(&log_path, options)
        .map_err(|e| format!("log {}: {e}", log_path.display()))?;
    // Console sockets go in a directory of the monitor's own (bundle paths are too long for a
    // socket's address), removed once the runtime's create returned.
    let scratch = scratch_dir()?;
    let runc = Runc::new(args.runtime.clone().unwrap_or_default())
        .preserve_fds(preserved_fds(&args.runtime_opts)?)
        .timeout(RUNTIME_TIMEOUT)
        .systemd_cgroup(args.systemd_cgroup)
        .scratch_dir(&scratch)
        .extra_global_args(args.runtime_args.iter().cloned());
    let mut create_args: Vec<String> = Vec::new();
    if args.no_pivot {
        create_args.push("--no-pivot".into());
    }
    if args.no_new_keyring {
        create_args.push("--no-new-keyring".into());
    }
    create_args.extend(args.runtime_opts.iter().cloned());
    let (_, jobs) = std::sync::mpsc::channel();
    let mut supervisor = Supervisor::new(Parts {
        namespace: "podman".into(),
        id: cid.clone(),
        bundle_dir: bundle.clone(),
        socket_dir: scratch.clone(),
        socket_stem: "init".into(),
        scratch_dir: scratch.clone(),
        diag,
        events: if args.exec {
            Box::new(crate::shim::NoEvents)
        } else {
            Box::new(files::OomMark {
                path: bundle.join("oom"),
            })
        },
        poll,
        reaper,
        jobs,
        default_options: Default::default(),
    });
    let close_stdin_on_end = args.stdin && !args.terminal && !args.leave_stdin_open;
    let front = ConmonFront::open(
        &bundle,
        supervisor.poll.registry(),
        close_stdin_on_end,
        args.exec,
    );
    let front = match front {
        Ok(front) => front,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&scratch);
            return Err(e);
        }
    };
    supervisor.register_door(Box::new(front), HOOKS);
    supervisor.tap_output_always();
    if args.exec {
        // podman connects to the exec's attach socket once told it is there, then sends its
        // second start byte: the exec starts only with its client in place.
        pipes.attach_ready();
        if args.exec_attach && !pipes.wait_for_start() {
            if let Some(door) = supervisor.take_door() {
                door.unregister();
            }
            let _ = std::fs::remove_dir_all(&scratch);
            return Err("the start pipe closed before the exec's start byte".into());
        }
        pipes.start = None;
    }
    let how = match (&args.exec_process_spec, args.exec) {
        (Some(process), true) => RunHow::ExecFile(process.clone()),
        _ => RunHow::CreateOnly,
    };
    let created = supervisor.run_container(RunSpec {
        bundle: bundle.clone(),
        runc,
        log: sink,
        listing: Listing {
            log_path,
            log_format: "cri".into(),
            runtime: args.runtime.clone().unwrap_or_default(),
            runtime_root: None,
        },
        // A terminal always takes the clients' input (podman passes -i only without one).
        stdin: args.stdin || args.terminal,
        terminal: args.terminal,
        rootfs: Vec::new(),
        network: None,
        how,
        pid_file: args.container_pidfile.clone(),
        create_args,
        passthrough: *log == LogDriver::Passthrough,
    });
    let _ = std::fs::remove_dir_all(&scratch);
    if *log == LogDriver::Passthrough {
        // The container has podman's stdio now; the monitor keeps none of it.
        null_stdio();
    }
    let pid = match created {
        Ok(pid) => pid,
        Err(e) => {
            if let Some(door) = supervisor.take_door() {
                door.unregister();
            }
            return Err(e.message);
        }
    };
    if args.timeout > 0 {
        let _ =
            supervisor.set_deadline(&ProcessKey::Init, Duration::from_secs(args.timeout as u64));
    }
    pipes.sync(pid.into(), None);
    pipes.sync = None;
    supervisor.trim_at = std::time::Instant::now().checked_add(Duration::from_millis(50));
    Ok(supervisor)
}

/// The most fds podman may hand on with `--preserve-fds`.
const MAX_PRESERVED_FDS: u32 = 1024;

/// `--runtime-opt --preserve-fds --runtime-opt N`: podman left fds 3 to N + 2 to the monitor for
/// the container, and they go on to the runtime open.
fn preserved_fds(runtime_opts: &[String]) -> Result<u32, String> {
    let mut opts = runtime_opts.iter();
    let mut count = 0;
    while let Some(opt) = opts.next() {
        let value = match opt.strip_prefix("--preserve-fds") {
            Some("") => opts.next().map(String::as_str),
            Some(inline) => inline.strip_prefix('='),
            None => continue,
        };
        count = value
            .and_then(|v| v.parse::<u32>().ok())
            .filter(|n| *n <= MAX_PRESERVED_FDS)
            .ok_or_else(|| {
                format!("--preserve-fds takes a count up to {MAX_PRESERVED_FDS}, not {value:?}")
            })?;
    }
    Ok(count)
}

/// A private directory for console sockets: `/tmp/tether-conmon-PID`.
fn scratch_dir() -> Result<PathBuf, String> {
    use std::os::unix::fs::DirBuilderExt;
    let dir = std::env::temp_dir().join(format!("tether-conmon-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(dir)
}

/// podman's exit command (`podman container cleanup`), after `--exit-delay`, awaited. The
/// monitor is no subreaper for it: what it leaves behind is not the container's.
fn run_exit_command(args: &ConmonArgs, diag: &Diag) {
    let Some(command) = &args.exit_command else {
        return;
    };
    let _ = nix::sys::prctl::set_child_subreaper(false);
    if args.exit_delay > 0 {
        std::thread::sleep(Duration::from_secs(args.exit_delay as u64));
    }
    let mut exit_command = std::process::Command::new(command);
    exit_command.args(&args.exit_command_args);
    shim_runc::prepare_child(&mut exit_command);
    match exit_command.status() {
        Ok(status) if !status.success() => {
            diag.warn(format_args!("exit command {}: {status}", command.display()))
        }
        Ok(_) => {}
        Err(e) => diag.warn(format_args!("exit command {}: {e}", command.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn log_drivers_are_read_as_conmon_reads_them() {
        let k8s = |p: &str| Ok(LogDriver::K8sFile(p.into()));
        assert_eq!(
            LogDriver::parse(&strings(&["k8s-file:/b/ctr.log"])),
            k8s("/b/ctr.log")
        );
        assert_eq!(
            LogDriver::parse(&strings(&["/b/ctr.log"])),
            k8s("/b/ctr.log")
        );
        assert_eq!(LogDriver::parse(&strings(&["none"])), Ok(LogDriver::None));
        assert_eq!(
            LogDriver::parse(&strings(&["off", "k8s-file:/l"])),
            k8s("/l")
        );
        assert!(LogDriver::parse(&[]).unwrap_err().contains("--log-path"));
        assert!(LogDriver::parse(&strings(&["k8s-file:"]))
            .unwrap_err()
            .contains("requires a filename"));
        assert!(LogDriver::parse(&strings(&["journald"]))
            .unwrap_err()
            .contains("not supported"));
        assert!(LogDriver::parse(&strings(&["splunk:x"]))
            .unwrap_err()
            .contains("No such log driver splunk"));
    }

    #[test]
    fn preserved_fds_come_from_the_runtime_opts() {
        assert_eq!(preserved_fds(&strings(&["--preserve-fds", "2"])), Ok(2));
        assert_eq!(preserved_fds(&strings(&["--preserve-fds=3"])), Ok(3));
        assert_eq!(preserved_fds(&strings(&["--tcp-established"])), Ok(0));
        assert!(preserved_fds(&strings(&["--preserve-fds"])).is_err());
        assert!(preserved_fds(&strings(&["--preserve-fds", "99999"])).is_err());
    }
}
