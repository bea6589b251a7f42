//! The control socket: accepting clients, checking who they are, reading request lines and writing
//! answers, all nonblocking on the daemon's one event loop. A client that sends garbage, sends too
//! much, never sends, never reads or vanishes mid-request costs a bounded amount and affects no one
//! else.

use mio::net::{UnixListener, UnixStream};
use mio::{Interest, Registry, Token};
use shim_core::protocol::{self, ErrorKind, Request, Response, MAX_REQUEST};
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// The listener's token.
pub const LISTENER: Token = Token(1);
/// Tokens from here on are connections.
const FIRST_CONNECTION: usize = 1000;
/// At most this many clients at once; more are turned away.
const MAX_CONNECTIONS: usize = 256;
/// A client that lets this much of our answers pile up unread is dropped.
const MAX_UNREAD_ANSWERS: usize = 1 << 20;

struct Connection {
    stream: UnixStream,
    input: Vec<u8>,
    output: Vec<u8>,
    /// Requests handed to the daemon and not answered yet.
    outstanding: usize,
    /// The client closed its side.
    hung_up: bool,
}

/// One thing a client asked, or a reason to answer it with an error at once.
pub type Incoming = (Token, Result<Request, Response>);

/// The control socket server.
pub struct ControlServer {
    listener: UnixListener,
    connections: HashMap<Token, Connection>,
    next_token: usize,
    daemon_uid: u32,
}

impl ControlServer {
    /// Binds `path` (mode 0600) and registers the listener.
    pub fn bind(path: &Path, registry: &Registry) -> io::Result<Self> {
        let _ = std::fs::remove_file(path);
        let mut listener = UnixListener::bind(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        registry.register(&mut listener, LISTENER, Interest::READABLE)?;
        Ok(ControlServer {
            listener,
            connections: HashMap::new(),
            next_token: FIRST_CONNECTION,
            daemon_uid: nix::unistd::geteuid().as_raw(),
        })
    }

    /// Whether `token` belongs to the control socket.
    pub fn owns(&self, token: Token) -> bool {
        token == LISTENER || self.connections.contains_key(&token)
    }

    /// Handles a readiness event; returns the requests that arrived.
    pub fn handle(&mut self, registry: &Registry, token: Token) -> Vec<Incoming> {
        let mut incoming = Vec::new();
        if token == LISTENER {
            self.accept(registry);
        } else {
            self.flush(registry, token);
            self.read(registry, token, &mut incoming);
        }
        incoming
    }

    /// Queues `response` for `token` (a no-op if the client is gone) and sends what it can.
    pub fn reply(&mut self, registry: &Registry, token: Token, response: &Response) {
        let Some(connection) = self.connections.get_mut(&token) else {
            return;
        };
        connection.outstanding = connection.outstanding.saturating_sub(1);
        connection.output.extend_from_slice(&response.to_line());
        self.flush(registry, token);
    }

    /// Sends what is buffered for every client, blocking briefly if needed: used just before the
    /// daemon exits, so a `delete` gets its answer.
    pub fn flush_all_blocking(&mut self) {
        for connection in self.connections.values_mut() {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
            while !connection.output.is_empty() && std::time::Instant::now() < deadline {
                match connection.stream.write(&connection.output) {
                    Ok(n) => {
                        connection.output.drain(..n);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::yield_now(),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
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
            if let Err(refusal) = self.admit(&stream) {
                // Best effort: tell them why, then hang up.
                let _ = stream.write(&refusal.to_line());
                continue;
            }
            let token = Token(self.next_token);
            self.next_token += 1;
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
                    },
                );
            }
        }
    }

    /// Only root and the daemon's own user may talk to it.
    fn admit(&self, stream: &UnixStream) -> Result<(), Response> {
        use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
        let credentials = getsockopt(stream, PeerCredentials)
            .map_err(|e| Response::error(ErrorKind::Internal, format!("peer credentials: {e}")))?;
        let uid = credentials.uid();
        if uid != 0 && uid != self.daemon_uid {
            return Err(Response::error(
                ErrorKind::PermissionDenied,
                format!("uid {uid} may not control this container"),
            ));
        }
        if self.connections.len() >= MAX_CONNECTIONS {
            return Err(Response::error(
                ErrorKind::Internal,
                format!("too many control connections (limit {MAX_CONNECTIONS})"),
            ));
        }
        Ok(())
    }

    fn read(&mut self, registry: &Registry, token: Token, incoming: &mut Vec<Incoming>) {
        let Some(connection) = self.connections.get_mut(&token) else {
            return;
        };
        if connection.hung_up {
            return;
        }
        let mut chunk = [0u8; 4096];
        let mut drop_it = false;
        loop {
            match connection.stream.read(&mut chunk) {
                Ok(0) => {
                    connection.hung_up = true;
                    break;
                }
                Ok(n) => connection.input.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    drop_it = true;
                    break;
                }
            }
            // Take complete lines as they come, so the buffer never holds more than one request.
            while let Some(newline) = connection.input.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = connection.input.drain(..=newline).collect();
                let line = &line[..line.len() - 1];
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                connection.outstanding += 1;
                incoming.push((token, protocol::parse_request(line)));
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
                break;
            }
        }
        if drop_it {
            self.remove(registry, token);
        } else {
            self.flush(registry, token);
        }
    }

    fn flush(&mut self, registry: &Registry, token: Token) {
        let Some(connection) = self.connections.get_mut(&token) else {
            return;
        };
        while !connection.output.is_empty() {
            match connection.stream.write(&connection.output) {
                Ok(n) => {
                    connection.output.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.remove(registry, token);
                    return;
                }
            }
        }
        let finished =
            connection.hung_up && connection.outstanding == 0 && connection.output.is_empty();
        if finished || connection.output.len() > MAX_UNREAD_ANSWERS {
            self.remove(registry, token);
        }
    }

    fn remove(&mut self, registry: &Registry, token: Token) {
        if let Some(mut connection) = self.connections.remove(&token) {
            let _ = registry.deregister(&mut connection.stream);
        }
    }
}
