//! containerd's door: the `containerd.task.v2.Task` ttrpc service on one thread with one mio loop.
//!
//! The wire is ttrpc: frames of a 10-byte header (length and stream id, big-endian u32; a type
//! byte; a flags byte) and a protobuf `Request` or `Response`. Each request is decoded here into a
//! job for the supervisor ([`calls::job`]), whose answer comes back as a [`Reply`] through a channel and this
//! thread's waker, so no thread waits on a call: a `Wait` that lasts the container's whole life is
//! just an answer not given yet. (The ttrpc crate's server spends about six threads per connection
//! and aborts the shim when it cannot make one.)
//!
//! Only the shim's own user is served: a connection from another uid (`SO_PEERCRED`) is closed at
//! once and said in the log ([`crate::front::admission`]); the socket is 0600 in a 0700 directory.
//!
//! Every value from outside is bounded here: at most [`MAX_CONNECTIONS`] connections (more are
//! refused: accepted and closed), frames of at most [`MAX_MESSAGE`] bytes, a frame begun and not
//! finished within [`PARTIAL_FRAME_TIMEOUT`] closes its connection, and answers a client leaves
//! unread past [`MAX_UNREAD`] close it. Malformed requests, unknown methods and frames of
//! another type get an error answer on their stream; nothing a client sends stops the door.

use super::calls::{self, status, Answer};
use crate::front::admission::Admission;
use crate::shim::tokens::{self, Tokens, DOOR_LISTENER, DOOR_WAKER};
use crate::shim::Job;
use containerd_shim_protos::protobuf::Message;
use containerd_shim_protos::ttrpc::{self, Code};
use mio::net::{UnixListener, UnixStream};
use mio::{Events, Interest, Poll, Token, Waker};
use shim_io::fdio::{write_queued, write_queued_until};
use std::collections::HashMap;
use std::io::{self, Read};
use std::os::fd::RawFd;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The service containerd calls.
const SERVICE: &str = "containerd.task.v2.Task";
/// Bytes before a frame's payload.
const HEADER: usize = 10;
const TYPE_REQUEST: u8 = 1;
const TYPE_RESPONSE: u8 = 2;
/// The largest frame taken (ttrpc's own limit).
pub const MAX_MESSAGE: usize = 4 << 20;
/// containerd keeps one connection or two; a few more leave room for tools.
pub const MAX_CONNECTIONS: usize = 32;
/// A client that starts a frame and does not finish it within this is cut off.
pub const PARTIAL_FRAME_TIMEOUT: Duration = Duration::from_secs(10);
/// Answers held for a client that does not read them.
const MAX_UNREAD: usize = 16 << 20;
/// Calls of one connection the core has not answered yet; past it the connection is not read
/// until answers come back (a client pipelining slow calls cannot queue work without bound).
/// A `Wait` does not count: it queues no work, and containerd keeps one open per running process
/// on its one connection, so counting it could stall that connection.
pub const MAX_IN_FLIGHT: usize = 64;

/// One answer on its way back to a connection.
#[derive(Debug)]
pub struct Reply {
    connection: Token,
    stream_id: u32,
    response: ttrpc::Response,
    /// The answer to a call counted in the connection's calls in flight.
    from_core: bool,
}

/// Where answers go: the door's channel, and its waker.
#[derive(Debug, Clone)]
struct ReplyPath {
    replies: Sender<Reply>,
    waker: Arc<Waker>,
}

impl ReplyPath {
    fn send(&self, reply: Reply) {
        if self.replies.send(reply).is_ok() {
            let _ = self.waker.wake();
        }
    }

    /// The [`Answer`] for one request: encodes the core's result as a ttrpc response. `counted`:
    /// the call counts in its connection's calls in flight.
    fn answer<T: Message>(&self, connection: Token, stream_id: u32, counted: bool) -> Answer<T> {
        let path = self.clone();
        Box::new(move |result: ttrpc::Result<T>| {
            let response = match result.and_then(|message| {
                message
                    .write_to_bytes()
                    .map_err(|e| status(Code::INTERNAL, format!("encode the answer: {e}")))
            }) {
                Ok(payload) => ttrpc::Response {
                    status: Some(ttrpc::get_status(Code::OK, "")).into(),
                    payload,
                    ..Default::default()
                },
                Err(error) => error_response(error),
            };
            path.send(Reply {
                connection,
                stream_id,
                response,
                from_core: counted,
            });
        })
    }
}

fn error_response(error: ttrpc::Error) -> ttrpc::Response {
    let status = match error {
        ttrpc::Error::RpcStatus(status) => status,
        other => ttrpc::get_status(Code::UNKNOWN, format!("{other:?}")),
    };
    ttrpc::Response {
        status: Some(status).into(),
        ..Default::default()
    }
}

struct Connection {
    stream: UnixStream,
    input: Vec<u8>,
    output: Vec<u8>,
    /// Since when `input` holds the start of a frame not complete yet.
    partial_since: Option<Instant>,
    /// Close once `output` is sent.
    closing: bool,
    /// Calls handed to the core and not answered yet.
    in_flight: usize,
}

/// The door's half that stays with the daemon: stop it once the core is done.
#[derive(Debug)]
pub struct DoorHandle {
    stop: Sender<()>,
    waker: Arc<Waker>,
    thread: std::thread::JoinHandle<()>,
}

impl DoorHandle {
    /// Sends the answers still queued (Shutdown's above all), at most `within`, and stops.
    pub fn finish(self, within: Duration) {
        let _ = self.stop.send(());
        let _ = self.waker.wake();
        let deadline = Instant::now() + within;
        while !self.thread.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// Serves the listening socket `fd` on a new thread, handing calls to the supervisor as jobs
/// (and waking it with `core`).
pub fn spawn(fd: RawFd, jobs: Sender<Job>, core: Arc<Waker>) -> io::Result<DoorHandle> {
    let std_listener = crate::common::sys::inherited_listener(fd);
    std_listener.set_nonblocking(true)?;
    let mut listener = UnixListener::from_std(std_listener);
    let poll = Poll::new()?;
    poll.registry()
        .register(&mut listener, DOOR_LISTENER, Interest::READABLE)?;
    let waker = Arc::new(Waker::new(poll.registry(), DOOR_WAKER)?);
    let (replies, received) = mpsc::channel();
    let (stop, stopped) = mpsc::channel();
    let mut door = Door {
        poll,
        listener,
        connections: HashMap::new(),
        tokens: tokens::DOOR_CONNECTIONS,
        jobs,
        core,
        path: ReplyPath {
            replies,
            waker: waker.clone(),
        },
        received,
        stopped,
        // Only the shim's own user (containerd runs it as itself), whatever the socket's mode.
        admission: Admission::new(&[nix::unistd::geteuid().as_raw()], MAX_CONNECTIONS),
    };
    let thread = std::thread::Builder::new()
        .name("ttrpc".into())
        .spawn(move || door.run())?;
    Ok(DoorHandle {
        stop,
        waker,
        thread,
    })
}

struct Door {
    poll: Poll,
    listener: UnixListener,
    connections: HashMap<Token, Connection>,
    /// Tokens for new connections.
    tokens: Tokens,
    jobs: Sender<Job>,
    core: Arc<Waker>,
    path: ReplyPath,
    received: Receiver<Reply>,
    stopped: Receiver<()>,
    /// Who may connect, and how many.
    admission: Admission,
}

impl Door {
    fn run(&mut self) {
        let mut events = Events::with_capacity(64);
        loop {
            let timeout = self
                .next_deadline()
                .map(|at| at.saturating_duration_since(Instant::now()));
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != io::ErrorKind::Interrupted {
                    return;
                }
            }
            for event in events.iter() {
                match event.token() {
                    DOOR_LISTENER => self.accept(),
                    DOOR_WAKER => {}
                    token => {
                        self.flush(token);
                        self.read(token);
                    }
                }
            }
            while let Ok(reply) = self.received.try_recv() {
                self.deliver(reply);
            }
            self.cut_off_slow_senders();
            if self.stopped.try_recv().is_ok() {
                self.flush_all();
                return;
            }
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.connections
            .values()
            .filter(|c| c.in_flight < MAX_IN_FLIGHT)
            .filter_map(|c| c.partial_since)
            .min()
            .map(|since| since + PARTIAL_FRAME_TIMEOUT)
    }

    fn accept(&mut self) {
        loop {
            let mut stream = match self.listener.accept() {
                Ok((stream, _)) => stream,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // WouldBlock, or out of fds: the rest waits in the backlog.
                Err(_) => return,
            };
            // Past the cap a connection is closed at once: the shim lives, containerd's own
            // connection is in.
            if let Err((_, say)) = self.admission.admit(&stream, self.connections.len()) {
                if let Some(line) = say {
                    eprintln!("level=warning msg=\"ttrpc: {line}\"");
                }
                continue;
            }
            let token = self.tokens.take();
            if self
                .poll
                .registry()
                .register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)
                .is_ok()
            {
                self.connections.insert(
                    token,
                    Connection {
                        stream,
                        input: Vec::new(),
                        output: Vec::new(),
                        partial_since: None,
                        closing: false,
                        in_flight: 0,
                    },
                );
            }
        }
    }

    fn read(&mut self, token: Token) {
        let mut chunk = [0u8; 16 * 1024];
        let mut gone = false;
        let mut frames = Vec::new();
        {
            let Some(connection) = self.connections.get_mut(&token) else {
                return;
            };
            if connection.closing {
                return;
            }
            loop {
                // What is already buffered first (frames left when the budget ran out).
                let budget = MAX_IN_FLIGHT.saturating_sub(connection.in_flight + frames.len());
                match take_frames(&mut connection.input, &mut frames, budget) {
                    Ok(()) => {}
                    Err(oversized) => {
                        // Where the next frame starts is unknown now: answer and hang up.
                        frames.push(Frame::Oversized(oversized));
                        connection.input = Vec::new();
                        connection.closing = true;
                        break;
                    }
                }
                if connection.in_flight + frames.len() >= MAX_IN_FLIGHT {
                    // Enough work asked for: read the rest once answers come back.
                    break;
                }
                match connection.stream.read(&mut chunk) {
                    Ok(0) => {
                        gone = true;
                        break;
                    }
                    Ok(n) => connection.input.extend_from_slice(&chunk[..n]),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => {
                        gone = true;
                        break;
                    }
                }
            }
            connection.partial_since = match (connection.input.is_empty(), connection.partial_since)
            {
                (true, _) => None,
                (false, Some(since)) => Some(since),
                (false, None) => Some(Instant::now()),
            };
            if connection.input.capacity() > 64 * 1024 && connection.input.len() < 1024 {
                connection.input.shrink_to(1024);
            }
        }
        for frame in frames {
            self.dispatch(token, frame);
        }
        if gone {
            self.remove(token);
        } else {
            self.flush(token);
        }
    }

    fn dispatch(&mut self, token: Token, frame: Frame) {
        let (stream_id, refusal) = match frame {
            Frame::Request { stream_id, payload } => match self.job(token, stream_id, &payload) {
                Ok((job, counted)) => {
                    if self.jobs.send(job).is_ok() {
                        let _ = self.core.wake();
                        if let (true, Some(connection)) =
                            (counted, self.connections.get_mut(&token))
                        {
                            connection.in_flight += 1;
                        }
                        return;
                    }
                    (
                        stream_id,
                        status(Code::UNAVAILABLE, "the shim is shutting down"),
                    )
                }
                Err(error) => (stream_id, error),
            },
            Frame::Other { stream_id, kind } => (
                stream_id,
                status(
                    Code::INVALID_ARGUMENT,
                    format!("ttrpc message type {kind} is not a request"),
                ),
            ),
            Frame::Oversized(length) => (
                0,
                status(
                    Code::RESOURCE_EXHAUSTED,
                    format!("ttrpc message of {length} bytes is over the {MAX_MESSAGE}-byte limit"),
                ),
            ),
        };
        self.deliver(Reply {
            connection: token,
            stream_id,
            response: error_response(refusal),
            from_core: false,
        });
    }

    /// Decodes one request into a job for the supervisor; with it, whether it counts in the
    /// connection's calls in flight.
    fn job(&self, token: Token, stream_id: u32, payload: &[u8]) -> ttrpc::Result<(Job, bool)> {
        let request = ttrpc::Request::parse_from_bytes(payload).map_err(|e| {
            status(
                Code::INVALID_ARGUMENT,
                format!("malformed ttrpc request: {e}"),
            )
        })?;
        if request.service != SERVICE {
            return Err(status(
                Code::UNIMPLEMENTED,
                format!("service {:?} is not served here", request.service),
            ));
        }
        let (method, payload) = (request.method.as_str(), &request.payload[..]);
        macro_rules! serve {
            ($handler:expr) => {
                calls::job(
                    method,
                    payload,
                    $handler,
                    self.path.answer(token, stream_id, true),
                )?
            };
        }
        let job = match method {
            "State" => serve!(calls::state),
            "Create" => serve!(calls::create),
            "Start" => serve!(calls::start),
            "Delete" => serve!(calls::delete),
            "Pids" => serve!(calls::pids),
            "Pause" => serve!(calls::pause),
            "Resume" => serve!(calls::resume),
            "Kill" => serve!(calls::kill),
            "Exec" => serve!(calls::exec),
            "ResizePty" => serve!(calls::resize),
            "CloseIO" => serve!(calls::close_io),
            "Update" => serve!(calls::update),
            "Stats" => serve!(calls::stats),
            "Connect" => serve!(calls::connect),
            "Shutdown" => serve!(calls::shutdown),
            "Wait" => {
                let answer = self.path.answer(token, stream_id, false);
                return Ok((calls::wait_job(payload, answer)?, false));
            }
            "Checkpoint" => {
                return Err(status(
                    Code::UNIMPLEMENTED,
                    "checkpoint is not implemented by tether",
                ))
            }
            other => {
                return Err(status(
                    Code::UNIMPLEMENTED,
                    format!("method {other:?} is not implemented by tether"),
                ))
            }
        };
        Ok((job, true))
    }

    fn deliver(&mut self, reply: Reply) {
        let Some(connection) = self.connections.get_mut(&reply.connection) else {
            return; // the client left before its answer came
        };
        let was_full = connection.in_flight >= MAX_IN_FLIGHT;
        if reply.from_core {
            connection.in_flight = connection.in_flight.saturating_sub(1);
        }
        let resume = was_full && connection.in_flight < MAX_IN_FLIGHT;
        if resume && connection.partial_since.is_some() {
            // Its clock starts again now that it is read again.
            connection.partial_since = Some(Instant::now());
        }
        let payload = reply.response.write_to_bytes().unwrap_or_else(|_| {
            error_response(status(Code::INTERNAL, "encode"))
                .write_to_bytes()
                .unwrap_or_default()
        });
        connection
            .output
            .extend_from_slice(&(payload.len() as u32).to_be_bytes());
        connection
            .output
            .extend_from_slice(&reply.stream_id.to_be_bytes());
        connection.output.extend_from_slice(&[TYPE_RESPONSE, 0]);
        connection.output.extend_from_slice(&payload);
        self.flush(reply.connection);
        if resume {
            // What the client sent meanwhile waits in the socket: no new event will say so.
            self.read(reply.connection);
        }
    }

    fn flush(&mut self, token: Token) {
        let Some(connection) = self.connections.get_mut(&token) else {
            return;
        };
        if write_queued(&mut connection.stream, &mut connection.output).is_err() {
            self.remove(token);
            return;
        }
        if connection.output.capacity() > 64 * 1024 && connection.output.is_empty() {
            connection.output = Vec::new();
        }
        let done = connection.closing && connection.output.is_empty();
        if done || connection.output.len() > MAX_UNREAD {
            self.remove(token);
        }
    }

    fn cut_off_slow_senders(&mut self) {
        let now = Instant::now();
        let slow: Vec<Token> = self
            .connections
            .iter()
            // A connection held back for its calls in flight is not slow: tether is not reading it.
            .filter(|(_, c)| {
                c.in_flight < MAX_IN_FLIGHT
                    && c.partial_since.is_some_and(|since| {
                        now.saturating_duration_since(since) >= PARTIAL_FRAME_TIMEOUT
                    })
            })
            .map(|(token, _)| *token)
            .collect();
        for token in slow {
            self.remove(token);
        }
    }

    /// Sends what is queued, blocking briefly: the daemon is about to exit.
    fn flush_all(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(1);
        for connection in self.connections.values_mut() {
            write_queued_until(&mut connection.stream, &mut connection.output, deadline);
        }
    }

    fn remove(&mut self, token: Token) {
        if let Some(mut connection) = self.connections.remove(&token) {
            let _ = self.poll.registry().deregister(&mut connection.stream);
        }
    }
}

/// One frame off the wire.
#[derive(Debug, PartialEq, Eq)]
enum Frame {
    Request {
        stream_id: u32,
        payload: Vec<u8>,
    },
    /// A frame of a type the server does not take.
    Other {
        stream_id: u32,
        kind: u8,
    },
    /// A header announcing more than [`MAX_MESSAGE`].
    Oversized(usize),
}

/// Takes up to `max` complete frames off the front of `input`; `Err(length)` for an oversized one.
fn take_frames(input: &mut Vec<u8>, frames: &mut Vec<Frame>, max: usize) -> Result<(), usize> {
    let mut at = 0;
    let mut taken = 0;
    while input.len() - at >= HEADER && taken < max {
        let header = &input[at..at + HEADER];
        let length = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let stream_id = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
        let kind = header[8];
        if length > MAX_MESSAGE {
            input.drain(..at);
            return Err(length);
        }
        if input.len() - at - HEADER < length {
            break;
        }
        let payload = &input[at + HEADER..at + HEADER + length];
        frames.push(if kind == TYPE_REQUEST {
            Frame::Request {
                stream_id,
                payload: payload.to_vec(),
            }
        } else {
            Frame::Other { stream_id, kind }
        });
        taken += 1;
        at += HEADER + length;
    }
    input.drain(..at);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn any_bytes_give_bounded_frames_or_a_refusal(bytes in prop::collection::vec(any::<u8>(), 0..4096), piece in 1usize..100) {
            let mut input = Vec::new();
            let mut frames = Vec::new();
            for chunk in bytes.chunks(piece) {
                input.extend_from_slice(chunk);
                if take_frames(&mut input, &mut frames, usize::MAX).is_err() {
                    break;
                }
                prop_assert!(input.len() < HEADER + MAX_MESSAGE);
            }
            for frame in frames {
                if let Frame::Request { payload, .. } = frame {
                    prop_assert!(payload.len() <= MAX_MESSAGE);
                }
            }
        }
    }

    fn frame(kind: u8, stream_id: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = (payload.len() as u32).to_be_bytes().to_vec();
        out.extend_from_slice(&stream_id.to_be_bytes());
        out.extend_from_slice(&[kind, 0]);
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn frames_are_taken_whole_in_any_pieces() {
        let wire = [
            frame(TYPE_REQUEST, 1, b"abc"),
            frame(3, 5, b""),
            frame(TYPE_REQUEST, 7, &[9; 1000]),
        ]
        .concat();
        let mut input = Vec::new();
        let mut frames = Vec::new();
        for byte in wire {
            input.push(byte);
            take_frames(&mut input, &mut frames, usize::MAX).unwrap();
        }
        assert!(input.is_empty());
        assert_eq!(
            frames,
            vec![
                Frame::Request {
                    stream_id: 1,
                    payload: b"abc".to_vec()
                },
                Frame::Other {
                    stream_id: 5,
                    kind: 3
                },
                Frame::Request {
                    stream_id: 7,
                    payload: vec![9; 1000]
                },
            ]
        );
    }

    #[test]
    fn an_oversized_header_is_refused_before_anything_is_buffered() {
        let mut input = frame(TYPE_REQUEST, 1, b"");
        input[..4].copy_from_slice(&u32::MAX.to_be_bytes());
        let mut frames = Vec::new();
        assert_eq!(
            take_frames(&mut input, &mut frames, usize::MAX),
            Err(u32::MAX as usize)
        );
    }
}
