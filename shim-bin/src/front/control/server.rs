//! The control socket: accepting clients, checking who they are, reading request lines (or, after
//! `exec` and `attach`, frames) and writing answers, all nonblocking on the daemon's one event loop. A
//! client that sends garbage, sends too much, never sends, never reads or vanishes mid-request costs a
//! bounded amount and affects no one else.

use crate::front::admission::{Admission, Refusal};
use crate::shim::tokens::{self, Tokens, CONTROL_LISTENER};
use mio::net::{UnixListener, UnixStream};
use mio::{Interest, Registry, Token};
use shim_core::frame::{self, FrameKind};
use shim_core::protocol::{self, ErrorKind, Request, Response, MAX_REQUEST};
use shim_io::fdio::{write_queued, write_queued_until};
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

/// At most this many clients at once. At the limit a newcomer takes the place of the longest idle
/// client (one that asked nothing and is owed nothing); only when none is idle is it turned away.
/// (Each costs one fd and a little memory; with the daemon's own, under the usual 1,024.)
pub const MAX_CONNECTIONS: usize = 900;
/// The last connections are kept for what must always get in: `kill`, `delete` (`rm -f`) and
/// `state`. Past `MAX_CONNECTIONS - RESERVED`, other requests are answered with a refusal.
pub const RESERVED: usize = 32;
/// A connection that sends no request (or, between requests, nothing) for this long is closed;
/// one waiting for an answer (`wait`) or carrying a stream is not idle.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(5);
/// A client in line mode that lets this much of our answers pile up unread is dropped. (Framed
/// streams are flow-controlled by the daemon with [`ControlServer::pending_output`].)
const MAX_UNREAD_ANSWERS: usize = 1 << 20;
/// The most read from one framed client per turn: the daemon looks at what arrived (and pauses a
/// client whose process does not take its input) before reading more, so a flood costs at most
/// this past the daemon's own high-water mark.
const FRAMED_READ_BUDGET: usize = 256 << 10;

struct Connection {
    stream: UnixStream,
    input: Vec<u8>,
    output: Vec<u8>,
    /// Requests handed to the daemon and not answered yet.
    outstanding: usize,
    /// The client closed its side.
    hung_up: bool,
    /// Frames instead of lines (after exec/attach).
    framed: bool,
    /// Input is left unread (backpressure towards the client).
    paused: bool,
    /// Close once the output is sent.
    closing: bool,
    /// An exec or attach request was read: what follows may be frames, so no more lines are taken
    /// until the daemon answers.
    awaiting_switch: bool,
    /// The last time the client sent something (or the connection was made).
    last_heard: Instant,
}

impl Connection {
    /// Closed after [`IDLE_TIMEOUT`] of silence: nothing asked and nothing owed.
    fn idle_deadline(&self) -> Option<Instant> {
        let busy = self.framed
            || self.outstanding > 0
            || self.awaiting_switch
            || self.closing
            || !self.output.is_empty();
        (!busy).then(|| self.last_heard + IDLE_TIMEOUT)
    }
}

/// Something a client did.
#[derive(Debug)]
pub enum Incoming {
    /// A request line (or the error answer it deserves).
    Request(Token, Result<Request, Response>),
    /// A frame on a framed connection.
    Frame(Token, FrameKind, Vec<u8>),
    /// The connection is gone.
    Closed(Token),
    /// A stranger's connection was refused: this for the shim's log.
    Refused(String),
}

/// The control socket server.
pub struct ControlServer {
    listener: UnixListener,
    connections: HashMap<Token, Connection>,
    /// Tokens for new connections.
    tokens: Tokens,
    /// Who may connect, and how many.
    admission: Admission,
    /// Refusals to say in the shim's log.
    refused: Vec<String>,
    closed: Vec<Token>,
    /// Framed clients with input left unread when their budget ran out.
    backlog: Vec<Token>,
}

impl ControlServer {
    /// Binds `path` (mode 0600) and registers the listener.
    pub fn bind(path: &Path, registry: &Registry) -> io::Result<Self> {
        let listener = crate::front::admission::bind_owner_only(path)?;
        listener.set_nonblocking(true)?;
        let mut listener = UnixListener::from_std(listener);
        registry.register(&mut listener, CONTROL_LISTENER, Interest::READABLE)?;
        Ok(ControlServer {
            listener,
            connections: HashMap::new(),
            tokens: tokens::CONTROL_CONNECTIONS,
            // Only root and the daemon's own user may talk to it.
            admission: Admission::new(&[0, nix::unistd::geteuid().as_raw()], MAX_CONNECTIONS),
            refused: Vec::new(),
            closed: Vec::new(),
            backlog: Vec::new(),
        })
    }

    /// Whether `token` belongs to the control socket.
    pub fn owns(&self, token: Token) -> bool {
        token == CONTROL_LISTENER || self.connections.contains_key(&token)
    }

    /// Handles a readiness event; returns what clients did.
    pub fn handle(&mut self, registry: &Registry, token: Token) -> Vec<Incoming> {
        let mut incoming = Vec::new();
        if token == CONTROL_LISTENER {
            self.accept(registry);
            incoming.extend(self.refused.drain(..).map(Incoming::Refused));
        } else {
            self.flush(registry, token);
            self.read(registry, token, &mut incoming);
        }
        incoming.extend(self.closed.drain(..).map(Incoming::Closed));
        incoming
    }

    /// Queues `response` for `token` (a no-op if the client is gone) and sends what it can.
    pub fn reply(&mut self, registry: &Registry, token: Token, response: &Response) {
        let Some(connection) = self.connections.get_mut(&token) else {
            return;
        };
        connection.outstanding = connection.outstanding.saturating_sub(1);
        connection.awaiting_switch = false;
        connection.output.extend_from_slice(&response.to_line());
        self.flush(registry, token);
    }

    /// Switches the connection to frames (after a successful exec or attach answer); returns frames
    /// that had already arrived.
    pub fn set_framed(&mut self, token: Token) -> Vec<Incoming> {
        let mut incoming = Vec::new();
        if let Some(connection) = self.connections.get_mut(&token) {
            connection.framed = true;
            connection.awaiting_switch = false;
            connection.outstanding = 0;
            if take_frames(connection, token, &mut incoming).is_err() {
                connection.closing = true;
            }
        }
        incoming
    }

    /// Queues a frame and sends what it can.
    pub fn send_frame(
        &mut self,
        registry: &Registry,
        token: Token,
        kind: FrameKind,
        payload: &[u8],
    ) {
        let Some(connection) = self.connections.get_mut(&token) else {
            return;
        };
        frame::encode(&mut connection.output, kind, payload);
        self.flush(registry, token);
    }

    /// Bytes queued for the client and not yet sent.
    pub fn pending_output(&self, token: Token) -> Option<usize> {
        self.connections.get(&token).map(|c| c.output.len())
    }

    /// Closes the connection once everything queued is sent.
    pub fn close_when_flushed(&mut self, registry: &Registry, token: Token) {
        if let Some(connection) = self.connections.get_mut(&token) {
            connection.closing = true;
        }
        self.flush(registry, token);
    }

    /// Cuts off a client that cannot keep up: what was queued for it is discarded and replaced by
    /// a notice frame; the connection closes once the client has read up to the notice. Nothing
    /// more is queued for it, so it costs only the notice while it lingers.
    pub fn cut_off(&mut self, registry: &Registry, token: Token, notice: &[u8]) {
        if let Some(connection) = self.connections.get_mut(&token) {
            connection.output.clear();
            frame::encode(&mut connection.output, FrameKind::Notice, notice);
            connection.closing = true;
            connection.paused = true;
        }
        self.flush(registry, token);
    }

    /// Stops or resumes reading a client (backpressure). Resuming reads what is waiting.
    pub fn set_reading(&mut self, registry: &Registry, token: Token, on: bool) -> Vec<Incoming> {
        let mut incoming = Vec::new();
        if let Some(connection) = self.connections.get_mut(&token) {
            let was_paused = connection.paused;
            connection.paused = !on;
            if on && was_paused {
                self.read(registry, token, &mut incoming);
            }
        }
        incoming.extend(self.closed.drain(..).map(Incoming::Closed));
        incoming
    }

    /// Whether clients have input left to read (the loop should not sleep).
    pub fn has_backlog(&self) -> bool {
        !self.backlog.is_empty()
    }

    /// Reads on for clients whose budget ran out last turn.
    pub fn work_backlog(&mut self, registry: &Registry) -> Vec<Incoming> {
        let mut incoming = Vec::new();
        for token in std::mem::take(&mut self.backlog) {
            self.read(registry, token, &mut incoming);
        }
        incoming.extend(self.closed.drain(..).map(Incoming::Closed));
        incoming
    }

    /// When the next idle connection is due to be closed.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.connections
            .values()
            .filter_map(Connection::idle_deadline)
            .min()
    }

    /// Closes connections idle for [`IDLE_TIMEOUT`] (reported through [`ControlServer::take_closed`]).
    pub fn expire_idle(&mut self, registry: &Registry) {
        let now = Instant::now();
        let idle: Vec<Token> = self
            .connections
            .iter()
            .filter(|(_, c)| c.idle_deadline().is_some_and(|at| at <= now))
            .map(|(token, _)| *token)
            .collect();
        for token in idle {
            self.remove(registry, token);
        }
    }

    /// Connections removed since the last call (also reported through [`ControlServer::handle`]).
    pub fn take_closed(&mut self) -> Vec<Token> {
        std::mem::take(&mut self.closed)
    }

    /// Sends what is buffered for every client, blocking briefly if needed: used just before the
    /// daemon exits, so a `delete` gets its answer.
    pub fn flush_all_blocking(&mut self) {
        for connection in self.connections.values_mut() {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
            write_queued_until(&mut connection.stream, &mut connection.output, deadline);
        }
    }

    fn accept(&mut self, registry: &Registry) {
        loop {
            let (mut stream, _) = match self.listener.accept() {
                Ok(accepted) => accepted,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return,
            };
            if self.connections.len() >= MAX_CONNECTIONS {
                self.evict_one_idle(registry);
            }
            if let Err(refusal) = self.admit(&stream) {
                // Best effort: tell them why, then hang up.
                let _ = stream.write(&refusal.to_line());
                continue;
            }
            let token = self.tokens.take();
            if registry
                .register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)
                .is_ok()
            {
                self.connections.insert(
                    token,
                    Connection {
                        stream,
                        input: Vec::new(),
                        output: Vec::new(),
                        outstanding: 0,
                        hung_up: false,
                        framed: false,
                        paused: false,
                        closing: false,
                        awaiting_switch: false,
                        last_heard: Instant::now(),
                    },
                );
            }
        }
    }

    /// Closes the client idle longest, if one is idle at all.
    fn evict_one_idle(&mut self, registry: &Registry) {
        let oldest = self
            .connections
            .iter()
            .filter(|(_, c)| c.idle_deadline().is_some())
            .min_by_key(|(_, c)| c.last_heard)
            .map(|(token, _)| *token);
        if let Some(token) = oldest {
            self.remove(registry, token);
        }
    }

    /// The door's admission step ([`crate::front::admission`]), its refusal as the answer.
    fn admit(&mut self, stream: &UnixStream) -> Result<(), Response> {
        let open = self.connections.len();
        self.admission
            .admit(stream, open)
            .map_err(|(refusal, say)| {
                self.refused.extend(say);
                match refusal {
                    Refusal::Stranger(why) => Response::error(ErrorKind::PermissionDenied, why),
                    Refusal::Full(why) => {
                        Response::error(ErrorKind::Internal, format!("control socket: {why}"))
                    }
                }
            })
    }

    fn read(&mut self, registry: &Registry, token: Token, incoming: &mut Vec<Incoming>) {
        let crowded = self.connections.len() > MAX_CONNECTIONS - RESERVED;
        let Some(connection) = self.connections.get_mut(&token) else {
            return;
        };
        if connection.hung_up || connection.paused {
            return;
        }
        let mut chunk = [0u8; 16 * 1024];
        let mut broken = false;
        let mut taken = 0;
        let mut over_budget = false;
        loop {
            match connection.stream.read(&mut chunk) {
                Ok(0) => {
                    connection.hung_up = true;
                    break;
                }
                Ok(n) => {
                    connection.input.extend_from_slice(&chunk[..n]);
                    connection.last_heard = Instant::now();
                    taken += n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    broken = true;
                    break;
                }
            }
            if connection.framed {
                if take_frames(connection, token, incoming).is_err() {
                    broken = true;
                    break;
                }
                if connection.paused {
                    break;
                }
                if taken >= FRAMED_READ_BUDGET {
                    over_budget = true;
                    break;
                }
            } else if !connection.awaiting_switch
                && take_lines(connection, token, crowded, incoming).is_err()
            {
                break;
            }
        }
        if connection.framed && !broken && take_frames(connection, token, incoming).is_err() {
            broken = true;
        }
        if broken {
            self.remove(registry, token);
        } else {
            if over_budget && !self.backlog.contains(&token) {
                self.backlog.push(token);
            }
            self.flush(registry, token);
        }
    }

    fn flush(&mut self, registry: &Registry, token: Token) {
        let Some(connection) = self.connections.get_mut(&token) else {
            return;
        };
        if write_queued(&mut connection.stream, &mut connection.output).is_err() {
            self.remove(registry, token);
            return;
        }
        let drained = connection.output.is_empty();
        // A framed client that hung up is gone (our client never half-closes); a line client that
        // hung up still gets the answers it asked for.
        let finished = (connection.framed && connection.hung_up)
            || (drained
                && (connection.closing || (connection.hung_up && connection.outstanding == 0)));
        let overflowing = !connection.framed && connection.output.len() > MAX_UNREAD_ANSWERS;
        if finished || overflowing {
            self.remove(registry, token);
        }
    }

    fn remove(&mut self, registry: &Registry, token: Token) {
        if let Some(mut connection) = self.connections.remove(&token) {
            let _ = registry.deregister(&mut connection.stream);
            self.closed.push(token);
        }
    }
}

/// Takes complete request lines off the input; an oversized line is answered and ends the reading.
fn take_lines(
    connection: &mut Connection,
    token: Token,
    crowded: bool,
    incoming: &mut Vec<Incoming>,
) -> Result<(), ()> {
    while let Some(newline) = connection.input.iter().position(|&b| b == b'\n') {
        let line: Vec<u8> = connection.input.drain(..=newline).collect();
        let line = &line[..line.len() - 1];
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let request = protocol::parse_request(line);
        if crowded && !request.as_ref().is_ok_and(always_served) {
            // The reserve is for what must get in; the client learns why and may retry.
            connection.output.extend_from_slice(
                &Response::error(
                    ErrorKind::Internal,
                    format!(
                        "too many control connections (limit {}, the last {RESERVED} kept for kill, rm -f and state)",
                        MAX_CONNECTIONS
                    ),
                )
                .to_line(),
            );
            continue;
        }
        connection.outstanding += 1;
        let switches = matches!(request, Ok(Request::Exec(_) | Request::Attach));
        incoming.push(Incoming::Request(token, request));
        if switches {
            connection.awaiting_switch = true;
            break;
        }
    }
    if connection.input.len() > MAX_REQUEST {
        connection.input.clear();
        connection.output.extend_from_slice(
            &Response::error(
                ErrorKind::BadRequest,
                format!("request longer than {MAX_REQUEST} bytes"),
            )
            .to_line(),
        );
        connection.hung_up = true;
        connection.closing = true;
        return Err(());
    }
    Ok(())
}

/// What gets in even when the daemon is crowded with connections.
fn always_served(request: &Request) -> bool {
    matches!(
        request,
        Request::Kill { .. } | Request::Delete { .. } | Request::State
    )
}

fn take_frames(
    connection: &mut Connection,
    token: Token,
    incoming: &mut Vec<Incoming>,
) -> Result<(), ()> {
    loop {
        match frame::decode(&mut connection.input) {
            Ok(Some((kind, payload))) => incoming.push(Incoming::Frame(token, kind, payload)),
            Ok(None) => return Ok(()),
            Err(_) => return Err(()),
        }
    }
}
