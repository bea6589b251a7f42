//! The CLI's side of the control socket: one request, one answer.

use crate::cli::error::{Error, Result};
use shim_core::protocol::{Reply, Request, Response};
use shim_core::{ContainerId, ContainerState, StateLayout};
use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

/// How long an ordinary request may take (runtime commands included).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(70);
/// How long `state` waits: the daemon answers it from memory, without the runtime.
pub const STATE_TIMEOUT: Duration = Duration::from_secs(5);

/// What the container's shim daemon process is doing, as /proc tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DaemonProcess {
    /// Running (or sleeping, waiting for work).
    Alive,
    /// Stopped by a signal (SIGSTOP, SIGTSTP) or a tracer: it answers nothing until continued.
    Stopped(i32),
    /// Gone, or a zombie.
    Gone,
    /// No pid recorded (starting, or a containerd shim's entry).
    Unknown,
}

/// The daemon's recorded pid.
pub fn daemon_pid(layout: &StateLayout, id: &ContainerId) -> Option<i32> {
    std::fs::read_to_string(layout.daemon_pid_file(id))
        .ok()
        .and_then(|text| text.trim().parse::<i32>().ok())
        .filter(|pid| *pid > 0)
}

/// Looks the daemon's recorded pid up in /proc.
pub fn daemon_process(layout: &StateLayout, id: &ContainerId) -> DaemonProcess {
    let Some(pid) = daemon_pid(layout, id) else {
        return DaemonProcess::Unknown;
    };
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return DaemonProcess::Gone;
    };
    // The state is the first field after the command name, which is in parentheses.
    match stat
        .rsplit_once(") ")
        .and_then(|(_, rest)| rest.chars().next())
    {
        Some('Z' | 'X') => DaemonProcess::Gone,
        Some('T' | 't') => DaemonProcess::Stopped(pid),
        _ => DaemonProcess::Alive,
    }
}

/// Parses an id given on the command line.
pub fn parse_id(text: &str) -> Result<ContainerId> {
    text.parse().map_err(|e| Error::invalid(format!("{e}")))
}

/// The container `text` names: its id, or a prefix of exactly one container's id (as `ps` shows
/// long ids cut short). An id of no container is returned as it is: the request says so.
pub fn resolve_id(layout: &StateLayout, text: &str) -> Result<ContainerId> {
    let id = parse_id(text)?;
    if layout.is_container(&id) {
        return Ok(id);
    }
    let matching: Vec<ContainerId> = layout
        .list()
        .unwrap_or_default()
        .into_iter()
        .filter(|candidate| candidate.as_str().starts_with(text))
        .collect();
    match matching.as_slice() {
        [one] => Ok(one.clone()),
        [] => Ok(id),
        many => Err(Error::invalid(format!(
            "{text:?} is the start of {} container ids: say more of it",
            many.len()
        ))),
    }
}

/// Sends `request` to the container's daemon and returns its answer. `timeout` None waits forever
/// (for `wait`).
pub fn request(
    layout: &StateLayout,
    id: &ContainerId,
    request: &Request,
    timeout: Option<Duration>,
) -> Result<Reply> {
    let mut stream = connect(layout, id)?;
    stream
        .set_read_timeout(timeout)
        .and_then(|()| stream.set_write_timeout(Some(REQUEST_TIMEOUT)))
        .map_err(|e| Error::failed(format!("container {id}: {e}")))?;
    let mut line = serde_json::to_vec(request).expect("requests serialize");
    line.push(b'\n');
    // A daemon that refuses us answers and hangs up at once, maybe before our request is written:
    // a failed write is reported only if no answer can be read either.
    let sent = stream.write_all(&line);
    let mut answer = String::new();
    let read = BufReader::new(&stream).read_line(&mut answer);
    if let (Err(e), Ok(0) | Err(_)) = (&sent, &read) {
        return Err(Error::failed(format!(
            "container {id}: send to the shim daemon: {e}"
        )));
    }
    match read {
        Ok(0) => {
            return Err(Error::unanswered(format!(
                "container {id}: the shim daemon closed the connection without answering"
            )))
        }
        Ok(_) => {}
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
            return Err(Error::unanswered(format!(
                "container {id}: the shim daemon did not answer within {}s",
                timeout.unwrap_or_default().as_secs()
            )))
        }
        Err(e) => {
            return Err(Error::failed(format!(
                "container {id}: read the answer: {e}"
            )))
        }
    }
    match serde_json::from_str::<Response>(answer.trim()) {
        Ok(Response::Ok(reply)) => Ok(reply),
        Ok(Response::Error(body)) => Err(Error::failed(body.message)),
        Err(e) => Err(Error::failed(format!(
            "container {id}: unreadable answer from the shim daemon: {e}"
        ))),
    }
}

/// Connects to the container's daemon.
pub fn connect(layout: &StateLayout, id: &ContainerId) -> Result<UnixStream> {
    if !layout.is_container(id) {
        return Err(Error::failed(format!("no such container: {id}")));
    }
    trusted_entry(layout, id)?;
    if let DaemonProcess::Stopped(pid) = daemon_process(layout, id) {
        return Err(Error::unanswered(format!(
            "container {id}: its shim daemon (pid {pid}) is stopped and answers nothing; `kill -CONT {pid}` resumes it"
        )));
    }
    crate::common::sockpath::connect(&layout.control_socket(id)).map_err(|e| match e.kind() {
        ErrorKind::NotFound | ErrorKind::ConnectionRefused => dead_daemon(layout, id),
        _ => Error::failed(format!("container {id}: connect to the shim daemon: {e}")),
    })
}

/// The state recorded on disk (what is left when the daemon is gone); None when there is none,
/// or when the entry is not trusted (see [`trusted_entry`]).
pub fn recorded_state(layout: &StateLayout, id: &ContainerId) -> Option<ContainerState> {
    trusted_entry(layout, id).ok()?;
    let text = std::fs::read(layout.state_file(id)).ok()?;
    serde_json::from_slice(&text).ok()
}

/// The container's entry may be acted on only if nobody but root (or the caller) could have
/// written it: it names the runtime that `rm` runs.
pub fn trusted_entry(layout: &StateLayout, id: &ContainerId) -> Result<()> {
    layout
        .check_entry(id, nix::unistd::geteuid().as_raw())
        .map_err(|e| Error::failed(format!("container {id}: {e}")))
}

/// The caller may act on the state directory: root, or the user who owns it. Anyone else would
/// be shown no containers (an empty `ps`, a silent `events`: the entries are 0700) where there
/// are some, and be refused by every daemon.
pub fn accessible_root(layout: &StateLayout) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let uid = nix::unistd::geteuid().as_raw();
    let owner = match std::fs::metadata(layout.root()) {
        Ok(meta) => meta.uid(),
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) if e.kind() != ErrorKind::PermissionDenied => return Ok(()),
        Err(_) => u32::MAX,
    };
    if uid == 0 || uid == owner {
        return Ok(());
    }
    Err(Error::failed(format!(
        "permission denied: {} (tether needs root, or --state-dir a directory of your own)",
        layout.root().display()
    )))
}

/// The state directory may be used only if nobody but root (or the caller) could write it.
pub fn trusted_root(layout: &StateLayout) -> Result<()> {
    layout
        .check_root(nix::unistd::geteuid().as_raw())
        .map_err(|e| Error::invalid(format!("state dir: {e}")))
}

/// The error for a container whose daemon does not answer its socket.
pub fn dead_daemon(layout: &StateLayout, id: &ContainerId) -> Error {
    let pid = std::fs::read_to_string(layout.daemon_pid_file(id))
        .map(|p| format!(" (pid {})", p.trim()))
        .unwrap_or_default();
    let last = recorded_state(layout, id)
        .map(|s| format!("; last recorded status: {}", s.status))
        .unwrap_or_default();
    Error::failed(format!(
        "container {id}: its shim daemon{pid} is not running{last}; `tether rm -f {id}` cleans up"
    ))
}
