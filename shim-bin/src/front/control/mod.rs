//! tether's own door: the JSON-lines control socket of docs/protocol.md, served on the
//! supervisor's thread, in the container's entry of tether's state directory. (The entry itself,
//! its `state.json` and `exit` file, is the supervisor's record: [`crate::shim::record`].)
//!
//! The same door serves a container `tether run` started and one containerd started; what differs
//! is data ([`Owner`]): for containerd's, removing the container, exec and attach belong to
//! containerd's clients and are refused.

mod exec;
pub mod server;

use crate::shim::door::{Door, DoorHooks};
use crate::shim::record::Record;
use crate::shim::{StdioPlan, Supervisor};
use exec::build_process;
use mio::{Registry, Token};
use server::{ControlServer, Incoming};
use shim_core::frame::{self, FrameKind};
use shim_core::lifecycle::Phase;
use shim_core::protocol::{ErrorKind, ExecRequest, Reply, Request, Response};
use shim_core::{ContainerId, ExecId, Exit, ProcessKey, StateLayout};
use shim_io::Stream;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Who started the container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// `tether run`: every request is served, and the daemon ends at `delete`.
    Tether,
    /// containerd: tether lists it and signals it; the rest is containerd's.
    Containerd,
}

/// A `tether exec` whose exit someone waits for.
#[derive(Debug, Default)]
struct Session {
    /// The client its frames go to (none: detached, or the client left).
    client: Option<Token>,
}

/// The container's entry in tether's state directory, and its control socket.
pub struct TetherFront {
    id: ContainerId,
    owner: Owner,
    server: ControlServer,
    /// Clients waiting for the exit.
    waiters: Vec<Token>,
    sessions: HashMap<ExecId, Session>,
    exec_serial: u64,
    /// The container's own process (from config.json): what an exec starts from. Read at the first
    /// exec, not at start-up: parsing a whole runtime spec takes tens of KiB of stack, which stay
    /// resident for the daemon's life, and most containers are never exec'd into.
    base_process: Option<oci_spec::runtime::Process>,
    /// The container's rootfs (from config.json, with the process): where `exec -u NAME` looks.
    rootfs: Option<std::path::PathBuf>,
    /// Client input that arrived while something else was handled.
    deferred: Vec<Incoming>,
}

impl std::fmt::Debug for TetherFront {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TetherFront")
            .field("id", &self.id)
            .field("owner", &self.owner)
            .finish()
    }
}

impl TetherFront {
    fn new(id: ContainerId, owner: Owner, server: ControlServer) -> Self {
        TetherFront {
            id,
            owner,
            server,
            waiters: Vec::new(),
            sessions: HashMap::new(),
            exec_serial: 0,
            base_process: None,
            rootfs: None,
            deferred: Vec::new(),
        }
    }

    /// Serves the control socket of a container whose entry `layout` has.
    pub fn serve(
        layout: &StateLayout,
        id: ContainerId,
        owner: Owner,
        registry: &Registry,
    ) -> std::io::Result<Self> {
        let server = ControlServer::bind(&layout.control_socket(&id), registry)?;
        Ok(TetherFront::new(id, owner, server))
    }
}

/// The last frame a client gets, its process's exit; the connection closes once it is read.
fn send_exit_frame(
    server: &mut ControlServer,
    registry: &mio::Registry,
    client: Token,
    code: i32,
    timed_out: bool,
) {
    let payload = serde_json::json!({"exit_code": code, "timed_out": timed_out}).to_string();
    server.send_frame(registry, client, FrameKind::Exit, payload.as_bytes());
    server.close_when_flushed(registry, client);
}

/// An operation's answer, a refusal for the container's phase said as `refusal` says it.
fn refused_as(result: shim_core::Result<()>, refusal: impl FnOnce() -> Response) -> Response {
    match result {
        Ok(()) => Response::Ok(Reply::Done {}),
        Err(e)
            if matches!(
                e.kind,
                shim_core::ErrorKind::NotFound | shim_core::ErrorKind::InvalidState
            ) =>
        {
            refusal()
        }
        Err(e) => Response::from_error(e),
    }
}

/// The answer to requests that belong to containerd's clients.
pub fn refused(id: &str, what: &str) -> Response {
    Response::error(
        ErrorKind::BadRequest,
        format!("container {id} is managed by containerd: {what} it through containerd (ctr, nerdctl, crictl)"),
    )
}

/// The door's part of the supervisor's loop: the hooks it calls ([`HOOKS`]).
pub const HOOKS: DoorHooks = DoorHooks {
    ready: front_ready,
    backlog: front_backlog,
    tick: front_tick,
    output: attach_output,
    input_drained: client_input_drained,
    exited: front_exited,
};

/// This door, among the supervisor's.
fn front_mut(door: &mut Option<Box<dyn Door>>) -> Option<&mut TetherFront> {
    let door: &mut dyn std::any::Any = door.as_deref_mut()?;
    door.downcast_mut()
}

fn front_ref(door: &Option<Box<dyn Door>>) -> Option<&TetherFront> {
    let door: &dyn std::any::Any = door.as_deref()?;
    door.downcast_ref()
}

/// A readiness event on one of the door's sockets.
pub(crate) fn front_ready(s: &mut Supervisor, token: Token) {
    let registry = s.poll.registry();
    let incoming = match front_mut(&mut s.door) {
        Some(front) if front.owns(token) => {
            let mut incoming = front.server.handle(registry, token);
            incoming.extend(front.server.take_closed().into_iter().map(Incoming::Closed));
            incoming
        }
        _ => return,
    };
    on_clients(s, incoming);
}

/// Client input left over from earlier turns.
pub(crate) fn front_backlog(s: &mut Supervisor) {
    loop {
        let registry = s.poll.registry();
        let Some(front) = front_mut(&mut s.door) else {
            return;
        };
        let mut incoming = std::mem::take(&mut front.deferred);
        incoming.extend(front.server.work_backlog(registry));
        if incoming.is_empty() {
            return;
        }
        on_clients(s, incoming);
    }
}

/// Idle clients closed.
pub(crate) fn front_tick(s: &mut Supervisor) {
    let registry = s.poll.registry();
    let Some(front) = front_mut(&mut s.door) else {
        return;
    };
    front.server.expire_idle(registry);
    let closed: Vec<Incoming> = front
        .server
        .take_closed()
        .into_iter()
        .map(Incoming::Closed)
        .collect();
    on_clients(s, closed);
}

fn on_clients(s: &mut Supervisor, incoming: Vec<Incoming>) {
    for incoming in incoming {
        on_tether_client(s, incoming);
    }
}

/// One thing a tether client did.
fn on_tether_client(s: &mut Supervisor, incoming: Incoming) {
    match incoming {
        Incoming::Request(client, Ok(request)) => {
            let framed = matches!(request, Request::Attach)
                || matches!(&request, Request::Exec(exec) if !exec.detach);
            if let Some(response) = tether_request(s, client, request) {
                let ok = matches!(response, Response::Ok(_));
                reply_tether(s, client, &response);
                if framed && ok {
                    set_framed(s, client);
                    replay_early(s, client);
                }
            }
        }
        Incoming::Request(client, Err(response)) => reply_tether(s, client, &response),
        Incoming::Frame(client, kind, payload) => on_frame(s, client, kind, &payload),
        Incoming::Closed(client) => client_closed(s, client),
        Incoming::Refused(line) => s.diag.warn(format_args!("control socket: {line}")),
    }
}

fn reply_tether(s: &mut Supervisor, client: Token, response: &Response) {
    if let Some(front) = front_mut(&mut s.door) {
        front.server.reply(s.poll.registry(), client, response);
    }
}

/// The client's connection carries frames from now on.
fn set_framed(s: &mut Supervisor, client: Token) {
    if let Some(front) = front_mut(&mut s.door) {
        let early = front.server.set_framed(client);
        front.deferred.extend(early);
    }
}

/// Answers a request of docs/protocol.md; None: later (`wait`).
fn tether_request(s: &mut Supervisor, client: Token, request: Request) -> Option<Response> {
    let id = s.id.clone();
    let owner = front_ref(&s.door)?.owner;
    let not_running = || {
        Response::error(
            ErrorKind::InvalidState,
            format!("container {id} is not running"),
        )
    };
    let init_phase = s.process(&ProcessKey::Init).map(|init| init.phase());
    let running = matches!(init_phase, Ok(Phase::Running | Phase::Paused));
    // An attach is taken while output still comes (exiting), and after the exit by the first
    // client of a `tether run -i/-t`, for which the output was kept: a short command ends
    // before its client attaches.
    let attachable = running
        || matches!(init_phase, Ok(Phase::Exiting))
        || (matches!(init_phase, Ok(Phase::Exited)) && s.attached().keeps_for_first());
    Some(match request {
        Request::State => match s.container_state() {
            Some(state) => Response::Ok(Reply::State(Box::new(state))),
            None => Response::error(
                ErrorKind::InvalidState,
                format!("container {id} was deleted"),
            ),
        },
        Request::Wait => match s.container_state().and_then(|s| s.exit) {
            Some(exit) => Response::Ok(Reply::Exit {
                exit_code: exit.code,
            }),
            None => {
                front_mut(&mut s.door)?.waiters.push(client);
                return None;
            }
        },
        // Whether these may be done is the supervisor's rule, the same for both doors; what
        // a refusal says is this door's: in docker's words.
        Request::Kill { signal, all } => {
            let killed = s.kill(&ProcessKey::Init, signal.max(0) as u32, all);
            refused_as(killed.map(drop), not_running)
        }
        Request::Pids => match s.pids() {
            Ok(pids) => Response::Ok(Reply::Pids {
                pids: pids.into_iter().map(|(pid, _)| pid).collect(),
            }),
            Err(e) => refused_as(Err(e), not_running),
        },
        Request::Pause => refused_as(s.pause(true), not_running),
        Request::Resume => refused_as(s.pause(false), || {
            Response::error(
                ErrorKind::InvalidState,
                format!("container {id} is not paused"),
            )
        }),
        Request::ReopenLog => match s.copier.reopen_log() {
            Ok(()) => Response::Ok(Reply::Done {}),
            Err(e) => Response::error(ErrorKind::Internal, format!("reopen the log: {e}")),
        },
        Request::Delete { .. } if owner == Owner::Containerd => refused(&id, "delete"),
        Request::Exec(_) | Request::ExecState { .. } if owner == Owner::Containerd => {
            refused(&id, "exec into")
        }
        Request::Attach if owner == Owner::Containerd => refused(&id, "attach to"),
        Request::Delete { force } => tether_delete(s, force),
        Request::Exec(_) if !running => not_running(),
        Request::Attach if !attachable => not_running(),
        Request::Exec(request) => tether_exec(s, client, request),
        Request::ExecState { exec_id } => exec_state(s, &exec_id),
        Request::Attach => attach(s, client),
    })
}

/// `delete`: the container goes, and with it this daemon.
fn tether_delete(s: &mut Supervisor, force: bool) -> Response {
    let id = s.id.clone();
    match s.delete_container(force) {
        Ok(_) => {
            s.diag
                .info(format_args!("container {id} deleted; daemon exits"));
            s.done = true;
            Response::Ok(Reply::Done {})
        }
        Err(e) if e.kind == shim_core::ErrorKind::InvalidState => Response::error(
            ErrorKind::InvalidState,
            format!(
                "container {id} is running; kill it first or force the removal (tether rm -f {id})"
            ),
        ),
        Err(e) => Response::from_error(e),
    }
}

/// `exec`: a process started in the container (`runc exec --detach`), its output streamed to
/// the client as frames, its stdin (or terminal) fed from it; its exit is told only once its
/// output is complete, or after the exec's output grace when an orphaned background child
/// keeps a pipe open, so `sh -c 'sleep 100 &'` returns at once.
fn tether_exec(s: &mut Supervisor, client: Token, request: ExecRequest) -> Response {
    let bundle = match s.bundle() {
        Ok(bundle) => std::path::PathBuf::from(bundle),
        Err(e) => return Response::from_error(e),
    };
    let Some(front) = front_mut(&mut s.door) else {
        return Response::error(ErrorKind::Internal, "no door");
    };
    if front.base_process.is_none() {
        let path = bundle.join("config.json");
        match oci_spec::runtime::Spec::load(&path) {
            Ok(spec) => {
                front.base_process = Some(spec.process().clone().unwrap_or_default());
                front.rootfs = spec.root().as_ref().map(|root| bundle.join(root.path()));
            }
            Err(e) => {
                return Response::error(
                    ErrorKind::Internal,
                    format!("exec: {}: {e}", path.display()),
                )
            }
        }
    }
    let base = front.base_process.as_ref().expect("loaded above");
    let process = match build_process(base, &request, front.rootfs.as_deref()) {
        Ok(process) => process,
        Err(message) => return Response::error(ErrorKind::BadRequest, message),
    };
    front.exec_serial += 1;
    let exec_id = ExecId::new(format!("exec-{}", front.exec_serial)).expect("a valid exec id");
    let session_client = (!request.detach).then_some(client);
    let plan = StdioPlan::Client {
        client: session_client,
        stdin: request.stdin,
        terminal: request.tty,
    };
    let key = ProcessKey::Exec(exec_id.clone());
    let started = s
        .add_exec(exec_id.clone(), process, plan)
        .and_then(|()| s.remove_exec_at_exit(&key))
        .and_then(|()| s.start(&key));
    let pid = match started {
        Ok(pid) => pid,
        Err(e) => {
            if let Ok(container) = s.container_mut() {
                container.execs.remove(&exec_id);
            }
            return Response::from_error(e);
        }
    };
    if let Some((rows, cols)) = request.window {
        let _ = s.resize(&key, rows, cols);
    }
    if let Some(secs) = request.timeout_secs {
        let _ = s.set_deadline(&key, Duration::from_secs(secs));
    }
    let session = Session {
        client: session_client,
    };
    s.diag.info(format_args!(
        "{exec_id} started: pid {pid}, {:?}",
        request.args
    ));
    if let Some(front) = front_mut(&mut s.door) {
        front.sessions.insert(exec_id.clone(), session);
    }
    Response::Ok(Reply::Exec {
        exec_id: exec_id.to_string(),
        pid,
    })
}

fn exec_state(s: &Supervisor, exec_id: &str) -> Response {
    let not_found = || {
        Response::error(
            ErrorKind::BadRequest,
            format!("no exec {exec_id:?} in container {}", s.id),
        )
    };
    let Ok(exec_id) = ExecId::new(exec_id) else {
        return not_found();
    };
    match s.exec_state(&exec_id) {
        Some((running, exit_code)) => Response::Ok(Reply::ExecState {
            exec_id: exec_id.to_string(),
            running,
            exit_code,
        }),
        None => not_found(),
    }
}

/// `attach`: the client sees the container's output from now on (as frames), may write to its
/// stdin (pipe or terminal) and resize its terminal.
fn attach(s: &mut Supervisor, client: Token) -> Response {
    let (tty, stdin) = match s.process(&ProcessKey::Init) {
        Ok(init) => (init.terminal.is_some(), init.input.is_some()),
        Err(e) => return Response::from_error(e),
    };
    if s.door.is_none() {
        return Response::error(ErrorKind::Internal, "no door");
    }
    let count = s.attach_client(client);
    s.diag
        .info(format_args!("attach client joined ({count} attached)"));
    Response::Ok(Reply::Attach { tty, stdin })
}

/// The process a framed client talks to.
fn client_process(s: &Supervisor, client: Token) -> Option<ProcessKey> {
    if s.attached().contains(client) {
        return Some(ProcessKey::Init);
    }
    let front = front_ref(&s.door)?;
    {}
    front
        .sessions
        .iter()
        .find(|(_, s)| s.client == Some(client))
        .map(|(id, _)| ProcessKey::Exec(id.clone()))
}

/// A frame from an exec or attach client.
fn on_frame(s: &mut Supervisor, client: Token, kind: FrameKind, payload: &[u8]) {
    let Some(key) = client_process(s, client) else {
        return;
    };
    let input = s.process(&key).ok().and_then(|p| p.input);
    match kind {
        FrameKind::Stdin => {
            if let Some(n) = input {
                if !s.copier.client_input(s.poll.registry(), n, payload) {
                    read_clients_of(s, &key, false);
                }
            }
        }
        FrameKind::StdinEof => {
            if let Some(n) = input {
                s.copier.close_input(s.poll.registry(), n);
            }
        }
        FrameKind::Resize => {
            if let Some((rows, cols)) = frame::parse_resize(payload) {
                let _ = s.resize(&key, rows, cols);
            }
        }
        _ => {}
    }
}

/// Reads (or stops reading) the clients that write to a process.
fn read_clients_of(s: &mut Supervisor, key: &ProcessKey, on: bool) {
    let registry = s.poll.registry();
    let attached = s.attached().clients().to_vec();
    let Some(front) = front_mut(&mut s.door) else {
        return;
    };
    let clients: Vec<Token> = match key {
        ProcessKey::Init => attached,
        ProcessKey::Exec(id) => front
            .sessions
            .get(id)
            .and_then(|s| s.client)
            .into_iter()
            .collect(),
    };
    for client in clients {
        let incoming = front.server.set_reading(registry, client, on);
        front.deferred.extend(incoming);
    }
}

/// A process took input: its clients may send more.
pub(crate) fn client_input_drained(s: &mut Supervisor) {
    let Some(container) = &s.container else {
        return;
    };
    let ready: Vec<ProcessKey> = container
        .procs()
        .filter(|p| p.input.is_some_and(|n| s.copier.takes_input(n)))
        .map(|p| p.key.clone())
        .collect();
    for key in ready {
        read_clients_of(s, &key, true);
    }
}

/// A client went away: an exec it streamed keeps running with its stdin closed, its output read
/// and dropped so it never blocks.
fn client_closed(s: &mut Supervisor, client: Token) {
    let Some(front) = front_mut(&mut s.door) else {
        return;
    };
    front.waiters.retain(|w| *w != client);
    let session = front
        .sessions
        .iter_mut()
        .find(|(_, s)| s.client == Some(client));
    let exec = session.map(|(id, session)| {
        session.client = None;
        id.clone()
    });
    s.detach_client(client);
    s.copier.forget_client(client);
    if let Some(exec_id) = exec {
        if let Some(n) = s
            .process(&ProcessKey::Exec(exec_id))
            .ok()
            .and_then(|p| p.input)
        {
            s.close_relay(n);
        }
    }
}

/// The output kept for the first attach client, if this is it; and the exit, if it came
/// before the client.
fn replay_early(s: &mut Supervisor, client: Token) {
    let exit = s.process(&ProcessKey::Init).ok().and_then(|init| init.exit);
    if !s.attached().contains(client) {
        return;
    }
    let early = s.take_first_attach_output(client);
    let first = early.is_some();
    if exit.is_some() {
        s.detach_client(client);
    }
    let registry = s.poll.registry();
    let Some(front) = front_mut(&mut s.door) else {
        return;
    };
    for (stream, bytes) in early.unwrap_or_default() {
        let kind = crate::shim::frame_kind(stream);
        front.server.send_frame(registry, client, kind, &bytes);
    }
    if let Some(exit) = exit {
        send_exit_frame(&mut front.server, registry, client, exit.code(), false);
    }
    if first {
        // The client the output was kept for has it: a `--rm` container may go.
        s.release_removal();
    }
}

/// Output the log engine read from the container: the supervisor fans it out; the clients it
/// cut off for falling behind are done with here.
pub(crate) fn attach_output(s: &mut Supervisor, stream: Stream, bytes: &[u8]) {
    for client in s.fan_out(stream, bytes) {
        client_closed(s, client);
    }
}

/// A process's exit is recorded: the init's goes to the waiters and attach clients, an exec's
/// to its client (and, for `tether exec`, the exec is done with).
pub(crate) fn front_exited(s: &mut Supervisor, key: &ProcessKey, exit: Exit) {
    let timed_out = s.process(key).is_ok_and(|p| p.timed_out);
    let attached = if key.is_init() {
        s.take_attached()
    } else {
        Vec::new()
    };
    let registry = s.poll.registry();
    let Some(front) = front_mut(&mut s.door) else {
        return;
    };
    let code = exit.code();
    let mut send_exit = |client: Token, timed_out: bool| {
        send_exit_frame(&mut front.server, registry, client, code, timed_out)
    };
    match key {
        ProcessKey::Init => {
            for client in attached {
                send_exit(client, false);
            }
            let response = Response::Ok(Reply::Exit { exit_code: code });
            for waiter in std::mem::take(&mut front.waiters) {
                front.server.reply(registry, waiter, &response);
            }
            s.diag.info(format_args!("exit recorded: code {code}"));
        }
        ProcessKey::Exec(exec_id) => {
            if front.owner != Owner::Tether {
                return;
            }
            let session = front.sessions.remove(exec_id).unwrap_or_default();
            if let Some(client) = session.client {
                send_exit(client, timed_out);
            }
        }
    }
}

impl Door for TetherFront {
    fn owns(&self, token: Token) -> bool {
        self.server.owns(token)
    }

    fn has_backlog(&self) -> bool {
        self.server.has_backlog() || !self.deferred.is_empty()
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.server.next_deadline()
    }

    fn unregister(mut self: Box<Self>) {
        self.server.flush_all_blocking();
    }
}

/// containerd's Create made a container: list it in tether's state directory and serve its
/// control socket (the supervisor's [`Supervisor::on_created`], set by the shim's launcher).
pub fn register_containerd(s: &mut Supervisor) {
    let mut record = match Record::make_containerd_entry(&s.id) {
        Ok(record) => record,
        Err(e) => {
            s.diag.info(format_args!("{e}"));
            return;
        }
    };
    let served = TetherFront::serve(
        record.layout(),
        record.id().clone(),
        Owner::Containerd,
        s.poll.registry(),
    );
    match served {
        Ok(front) => {
            s.register_door(Box::new(front), HOOKS);
            s.record = Some(record);
        }
        Err(e) => {
            record.remove();
            s.diag.info(format_args!("not listed by tether: {e}"));
        }
    }
}

impl shim_io::copier::Frames for TetherFront {
    fn queued(&self, client: Token) -> usize {
        self.server.pending_output(client).unwrap_or(0)
    }

    fn send(&mut self, registry: &Registry, client: Token, stream: Stream, bytes: &[u8]) {
        let kind = crate::shim::frame_kind(stream);
        self.server.send_frame(registry, client, kind, bytes);
    }

    fn cut_off(&mut self, registry: &Registry, client: Token, notice: &[u8]) {
        self.server.cut_off(registry, client, notice);
    }
}
