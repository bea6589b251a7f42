//! `tether daemon`: the supervisor of one container `tether run` started, behind tether's own door.
//!
//! Life: `tether run` starts `tether daemon --config JSON` with stdout on a pipe. The daemon leaves
//! the caller's session, becomes a subreaper, runs the container with its output into tether's log
//! ([`Supervisor::run_container`]), opens the control socket, writes a one-line start report on
//! that pipe, and from then on serves until `delete` — the same supervisor containerd's shim runs,
//! with the container's output going to the log rather than to a client's fifos.

use crate::common::config::{DaemonConfig, StartReport};
use crate::front::control::{Owner, TetherFront};
use crate::shim::diag::Diag;
use crate::shim::persist::ShimLog;
use crate::shim::runtime::RuntimeOptions;
use crate::shim::{Listing, NoEvents, Parts, RunSpec, Supervisor};
use shim_core::{RootfsMount, StateLayout};
use shim_io::{LogSink, Rotation, SinkOptions};
use shim_runc::{DeleteOptions, Runc};
use std::time::{Duration, Instant};

/// How long after the container started its heap is trimmed.
const TRIM_AFTER: Duration = Duration::from_millis(50);

/// Entry point of `tether daemon`; returns the process exit code.
pub fn main(config_json: &str) -> u8 {
    // Nothing `tether run`'s own caller left open without O_CLOEXEC: the daemon lives for the
    // container's whole life and must not keep, say, the read end of a pipe someone waits on.
    shim_runc::close_fds_from(3);
    let config: DaemonConfig = match serde_json::from_str(config_json) {
        Ok(config) => config,
        Err(e) => {
            report(&StartReport::Failed {
                message: format!("daemon configuration: {e}"),
                code: None,
            });
            return 1;
        }
    };
    let layout = StateLayout::new(&config.state_dir);
    let diag = Diag::to_file(
        config.id.as_str(),
        ShimLog::open(&layout.shim_log(&config.id)),
    );
    let log_existed = config.log_path.exists();
    match start(&config, &layout, diag.clone()) {
        Ok(mut supervisor) => {
            report(&StartReport::Started {
                pid: supervisor.init_pid().unwrap_or(0),
            });
            if let Some(socket) = &config.notify_socket {
                if let Err(e) = notify_ready(socket) {
                    diag.warn(format_args!("tell systemd READY=1: {e}"));
                }
            }
            // Start-up (the runtime call above all) leaves freed heap pages behind that are still
            // resident; the daemon lives for the container's whole life, so give them back once,
            // when the start is over.
            supervisor.trim_at = Instant::now().checked_add(TRIM_AFTER);
            supervisor.run();
            if let Some(door) = supervisor.take_door() {
                door.unregister();
            }
            0
        }
        Err(StartFailure { message, code }) => {
            diag.warn(format_args!("start failed: {message}"));
            let _ = crate::shim::mounts::remove_container_dir(&layout.container_dir(&config.id));
            if !log_existed {
                let _ = std::fs::remove_file(&config.log_path);
            }
            report(&StartReport::Failed { message, code });
            1
        }
    }
}

/// Writes the start report to stdout (the pipe `tether run` reads), then points stdout at /dev/null
/// so nothing later can fail because `tether run` has gone.
fn report(report: &StartReport) {
    use std::io::Write;
    let mut line = serde_json::to_vec(report).expect("report serializes");
    line.push(b'\n');
    let _ = std::io::stdout().write_all(&line);
    let _ = std::io::stdout().flush();
    if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
        let _ = nix::unistd::dup2(std::os::fd::AsRawFd::as_raw_fd(&null), 1);
    }
}

/// Tells systemd (`Type=notify`) the service is up: the container runs and its door answers.
fn notify_ready(socket: &std::path::Path) -> std::io::Result<()> {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    let bytes = socket.as_os_str().as_bytes();
    let address = match bytes.strip_prefix(b"@") {
        Some(name) => SocketAddr::from_abstract_name(name)?,
        None => SocketAddr::from_pathname(socket)?,
    };
    // No MAINPID: the service's main process stays `tether run` in the foreground, whose exit
    // code is the container's (the unit needs NotifyAccess=all for this daemon to be heard).
    UnixDatagram::unbound()?.send_to_addr(b"READY=1\n", &address)?;
    Ok(())
}

/// Runs the container and opens the door; the error is one line for the user.
/// Why a start failed: one line, and the code a shell gives when the container's command itself
/// could not be run (127, 126), which `tether run` exits with.
struct StartFailure {
    message: String,
    code: Option<i32>,
}

impl From<String> for StartFailure {
    fn from(message: String) -> Self {
        StartFailure {
            message,
            code: None,
        }
    }
}

impl From<shim_core::Error> for StartFailure {
    fn from(error: shim_core::Error) -> Self {
        let code = match error.kind {
            shim_core::ErrorKind::Runtime { start_failure } => start_failure,
            _ => None,
        };
        StartFailure {
            message: error.message,
            code,
        }
    }
}

fn start(
    config: &DaemonConfig,
    layout: &StateLayout,
    diag: Diag,
) -> Result<Supervisor, StartFailure> {
    // Leave the caller's session and terminal: the caller may exit, or its terminal close.
    nix::unistd::setsid().map_err(|e| format!("setsid: {e}"))?;
    // A panic message goes to shim.log too.
    if let Ok(file) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(layout.shim_log(&config.id))
    {
        let _ = nix::unistd::dup2(std::os::fd::AsRawFd::as_raw_fd(&file), 2);
    }
    let _ = std::fs::write(
        layout.daemon_pid_file(&config.id),
        format!("{}\n", std::process::id()),
    );
    let (reaper, poll) = super::reaper_and_poll()?;
    let mut options = SinkOptions::new(config.format());
    if let Some(max_size) = config.log_max_size {
        options = options.rotation(Rotation {
            max_size,
            max_files: config.log_max_files,
        });
    }
    let log = LogSink::open(&config.log_path, options)
        .map_err(|e| format!("log {}: {e}", config.log_path.display()))?;
    let dir = layout.container_dir(&config.id);
    let mut runc = Runc::new(&config.runtime)
        .timeout(Duration::from_secs(config.runtime_timeout_secs))
        .log(layout.runtime_log(&config.id))
        .scratch_dir(&dir);
    if let Some(root) = &config.runtime_root {
        runc = runc.root(root);
    }
    // Nothing sends work from another thread: the door is on the supervisor's own.
    let (_, jobs) = std::sync::mpsc::channel();
    let mut supervisor = Supervisor::new(Parts {
        namespace: "tether".into(),
        id: config.id.as_str().to_owned(),
        bundle_dir: config.bundle.clone(),
        socket_dir: dir.clone(),
        socket_stem: "init".into(),
        scratch_dir: dir,
        diag,
        events: Box::new(NoEvents),
        poll,
        reaper,
        jobs,
        default_options: RuntimeOptions::default(),
    });
    supervisor.run_container(RunSpec {
        bundle: config.bundle.clone(),
        runc: runc.clone(),
        log,
        listing: Listing {
            log_path: config.log_path.clone(),
            log_format: config.log_format.clone(),
            runtime: config.runtime.clone(),
            runtime_root: config.runtime_root.clone(),
        },
        stdin: config.stdin,
        terminal: config.tty,
        rootfs: overlay(config, layout)?,
        network: config.network.clone(),
        how: crate::shim::RunHow::Run,
        pid_file: None,
        create_args: Vec::new(),
        passthrough: false,
    })?;
    // What the container wrote while the runtime ran goes to the log before the rest of the
    // start-up: its first line should not wait for the door and the state file. (Not when the
    // first attach client is to see it: that needs the door first.)
    if !config.replay_to_first_attach {
        supervisor.copy_waiting_output();
    }
    match TetherFront::serve(
        layout,
        config.id.clone(),
        Owner::Tether,
        supervisor.poll.registry(),
    ) {
        Ok(front) => {
            supervisor.register_door(Box::new(front), crate::front::control::HOOKS);
            supervisor.record = Some(crate::shim::record::Record::new(
                layout.clone(),
                config.id.clone(),
            ));
        }
        Err(e) => {
            let _ = supervisor.runtime_raw(|wait| {
                runc.delete(config.id.as_str(), DeleteOptions { force: true }, wait)
            });
            return Err(format!("control socket: {e}").into());
        }
    }
    if config.remove_on_exit {
        supervisor.remove_at_exit(config.replay_to_first_attach);
    }
    if config.replay_to_first_attach {
        supervisor.keep_output_for_first_attach();
    }
    supervisor.refresh_record();
    Ok(supervisor)
}

/// `--rootfs DIR:O`: an overlay on DIR whose upper and work directories are in the container's
/// state dir, so the container's changes go with it.
fn overlay(config: &DaemonConfig, layout: &StateLayout) -> Result<Vec<RootfsMount>, String> {
    let Some(lower) = &config.overlay_lower else {
        return Ok(Vec::new());
    };
    let dir = layout.container_dir(&config.id).join("overlay");
    let (upper, work) = (dir.join("upper"), dir.join("work"));
    for made in [&upper, &work] {
        std::fs::create_dir_all(made).map_err(|e| format!("overlay {}: {e}", made.display()))?;
    }
    Ok(vec![RootfsMount {
        kind: "overlay".into(),
        source: "overlay".into(),
        options: vec![
            format!("lowerdir={}", lower.display()),
            format!("upperdir={}", upper.display()),
            format!("workdir={}", work.display()),
        ],
    }])
}
