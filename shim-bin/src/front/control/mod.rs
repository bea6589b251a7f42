//! tether's own door: the JSON-lines control socket of docs/protocol.md, served on the
//! supervisor's thread, in the container's entry of tether's state directory. (The entry itself,
//! its `state.json` and `exit` file, is the supervisor's record: [`crate::shim::record`].)
//!
//! The same door serves a container `tether run` started and one containerd started; what differs
//! is data ([`Owner`]): for containerd's, removing the container, exec and attach belong to
//! containerd's clients and are refused.

mod requests;
pub mod server;

use crate::shim::door::{Door, DoorHooks};
use crate::shim::Supervisor;
use mio::{Registry, Token};
use server::{ControlServer, Incoming};
use shim_core::frame::FrameKind;
use shim_core::protocol::{Reply, Request, Response};
use shim_core::{ContainerId, Exit, ProcessKey, StateLayout};
use shim_io::Stream;
use std::time::Instant;

/// Who started the container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// `tether run`: every request is served, and the daemon ends at `delete`.
    Tether,
    /// containerd: tether lists it and signals it; the rest is containerd's.
    Containerd,
}

/// The container's entry in tether's state directory, and its control socket.
pub struct TetherFront {
    id: ContainerId,
    owner: Owner,
    server: ControlServer,
    /// Clients waiting for the exit.
    waiters: Vec<Token>,
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

/// The attach client gets what it is owed ([`Supervisor::attach_replay`]).
fn replay_early(s: &mut Supervisor, client: Token) {
    let (early, exit) = s.attach_replay(client);
    let registry = s.poll.registry();
    let Some(front) = front_mut(&mut s.door) else {
        return;
    };
    for (stream, bytes) in early {
        let kind = crate::shim::frame_kind(stream);
        front.server.send_frame(registry, client, kind, &bytes);
    }
    if let Some(exit) = exit {
        send_exit_frame(&mut front.server, registry, client, exit.code(), false);
    }
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
pub(crate) fn front_mut(door: &mut Option<Box<dyn Door>>) -> Option<&mut TetherFront> {
    let door: &mut dyn std::any::Any = door.as_deref_mut()?;
    door.downcast_mut()
}

pub(crate) fn front_ref(door: &Option<Box<dyn Door>>) -> Option<&TetherFront> {
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
            if let Some(response) = requests::tether_request(s, client, request) {
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

/// A frame from an exec or attach client; a process whose input is full stops its clients.
fn on_frame(s: &mut Supervisor, client: Token, kind: FrameKind, payload: &[u8]) {
    if let Some(full) = s.client_frame(client, kind, payload) {
        let clients = s.input_clients(&full);
        read_clients(s, clients, false);
    }
}

/// Reads (or stops reading) `clients`.
fn read_clients(s: &mut Supervisor, clients: Vec<Token>, on: bool) {
    let registry = s.poll.registry();
    let Some(front) = front_mut(&mut s.door) else {
        return;
    };
    for client in clients {
        let incoming = front.server.set_reading(registry, client, on);
        front.deferred.extend(incoming);
    }
}

/// A process took input: its clients may send more.
pub(crate) fn client_input_drained(s: &mut Supervisor) {
    let clients = s.clients_with_input_room();
    read_clients(s, clients, true);
}

/// A client went away ([`Supervisor::client_left`]); it waits no more.
fn client_closed(s: &mut Supervisor, client: Token) {
    if let Some(front) = front_mut(&mut s.door) {
        front.waiters.retain(|w| *w != client);
    }
    s.client_left(client);
}

/// Output the copier read into the log from the container: the supervisor fans it out; the clients it
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
    let session_client = match key {
        ProcessKey::Exec(exec_id) => s.take_session_client(exec_id),
        ProcessKey::Init => None,
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
        ProcessKey::Exec(_) => {
            if let Some(client) = session_client {
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
