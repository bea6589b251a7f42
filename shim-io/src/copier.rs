//! The one copier: every stdio stream of every process a shim supervises, whatever its other end —
//! a fifo, file or logging pipe ([`relay`]), the log ([`IoEngine`] into a
//! [`LogSink`]), a client's frames ([`client`](crate::client)) — under numbers it hands out, so
//! the supervisor holds one number per stream and never asks what is behind it.
//!
//! # Loop contract
//!
//! The copier does no waiting of its own; the caller's mio loop drives it:
//!
//! - Copy `n` is registered under the two tokens the `tokens` function given to [`Copier::new`]
//!   returns for `n`; on readiness of either, call [`Copier::ready`].
//! - Before sleeping, call [`Copier::work_backlog`] while [`Copier::has_backlog`], and never sleep
//!   past [`Copier::next_deadline`]. Call [`Copier::resume_clients`] and
//!   [`Copier::close_delivered`] once a turn.
//! - What the caller must act on — diagnostics, tapped output, input taken — is collected as
//!   [`Notice`]s: take them with [`Copier::take_notices`] every turn.
//! - A client's frames are the caller's: the calls that may produce some take a [`Frames`], the
//!   door that holds the clients' connections and says how much each has queued.
//! - Once a process is reaped, its exit may be announced when [`Copier::delivered`] says so.
//!
//! # Example
//!
//! ```
//! use mio::{Events, Poll, Token};
//! use shim_io::copier::{Copier, OutputTo};
//! use shim_io::relay::Destination;
//! use std::io::Write;
//! use std::time::Instant;
//!
//! let dir = tempfile::tempdir()?;
//! let out = dir.path().join("out.log");
//! let mut poll = Poll::new()?;
//! let mut copier = Copier::new(|n| (Token(2 * n), Token(2 * n + 1)));
//! let (read_end, write_end) = nix::unistd::pipe()?;
//! let destination = Destination::open(&format!("file://{}", out.display()))?;
//! let n = copier.add_output(poll.registry(), read_end, OutputTo::Relay(destination), "out", "stdout")?;
//! std::fs::File::from(write_end).write_all(b"hello\n")?; // and the process is gone: EOF
//! let mut events = Events::with_capacity(8);
//! let now = Instant::now();
//! while !copier.delivered(poll.registry(), &[n], now, false, None) {
//!     copier.work_backlog(poll.registry(), None);
//!     poll.poll(&mut events, Some(std::time::Duration::from_millis(10)))?;
//!     for event in events.iter() {
//!         copier.ready(poll.registry(), event.token().0 / 2, None);
//!     }
//! }
//! assert_eq!(std::fs::read(&out)?, b"hello\n");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use crate::client::{ClientInput, ClientOutput, Taken, CLIENT_HIGH_WATER};
use crate::relay::{self, Destination, InputRelay, OutputRelay};
use crate::{IoEngine, IoEvent, LogSink, SinkId, Stream};
use mio::{Registry, Token};
use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

/// What a copy reads in one go.
const COPY_BUFFER: usize = 64 * 1024;
/// How often a fifo that holds the last of a finished output is looked at, to close it (the
/// reader's end-of-file) once read.
const LINGER_POLL: Duration = Duration::from_millis(250);

/// Where one output goes.
#[derive(Debug)]
pub enum OutputTo {
    /// A fifo, file or pipe (none: the client asked for nothing, read and dropped).
    Relay(Option<Destination>),
    /// The log set with [`Copier::log_to`].
    Log,
    /// A client's frames (none: detached, read and dropped).
    Client(Option<Token>),
}

/// Where a process's input comes from.
#[derive(Debug)]
pub enum InputFrom {
    Fifo(File),
    /// A client's frames, handed over with [`Copier::client_input`].
    Client,
}

/// What the caller must act on.
#[derive(Debug, PartialEq, Eq)]
pub enum Notice {
    /// Something for the shim's log at warning level.
    Warn(String),
    /// Something for the shim's log at debug level.
    Debug(String),
    /// Output the log's copy read while tapped ([`Copier::tap_log`]), for attached clients.
    Tapped { stream: Stream, bytes: Vec<u8> },
    /// An input from clients took what it held: its clients may send more.
    InputTaken,
}

/// The door that holds the clients' connections.
pub trait Frames {
    /// What is queued for `client` and not sent yet.
    fn queued(&self, client: Token) -> usize;
    /// Queues `bytes` of a process's `stream` for `client`.
    fn send(&mut self, registry: &Registry, client: Token, stream: Stream, bytes: &[u8]);
    /// Drops what is queued for `client`, tells it `notice`, and closes it once that is sent.
    fn cut_off(&mut self, registry: &Registry, client: Token, notice: &[u8]);
}

/// `frames` again, for one more call.
fn reborrow<'a>(frames: &'a mut Option<&mut dyn Frames>) -> Option<&'a mut dyn Frames> {
    frames
        .as_mut()
        .map(|frames| &mut **frames as &mut dyn Frames)
}

/// One copy.
#[derive(Debug)]
enum Copy {
    /// Output to a fifo, file or pipe, named for diagnostics.
    Output {
        relay: OutputRelay,
        name: String,
    },
    /// A fifo's input to the process.
    Input(InputRelay),
    /// Output into the log: the log engine copies it, under this source token.
    Log(Token),
    ToClient(ClientOutput),
    FromClient(ClientInput),
}

/// The log and the engine that copies into it.
#[derive(Debug)]
struct Log {
    engine: IoEngine,
    sink: SinkId,
}

/// Every copy of a shim's processes (see the module docs for its loop contract).
#[derive(Debug)]
pub struct Copier {
    copies: HashMap<usize, Copy>,
    next: usize,
    /// Copies with more to do without an event to say so (new ones, budgets run out).
    backlog: Vec<usize>,
    /// Made with the first copy that reads through it: a log copied by the engine needs none, and
    /// a shim that never relays keeps 64 KiB less resident.
    buf: Vec<u8>,
    log: Option<Log>,
    tokens: fn(usize) -> (Token, Token),
    notices: Vec<Notice>,
}

impl Copier {
    /// `tokens`: the source and destination tokens copy `n` is registered under.
    pub fn new(tokens: fn(usize) -> (Token, Token)) -> Copier {
        Copier {
            copies: HashMap::new(),
            next: 0,
            backlog: Vec::new(),
            buf: Vec::new(),
            log: None,
            tokens,
            notices: Vec::new(),
        }
    }

    /// Outputs to [`OutputTo::Log`] are written into `sink` from now on.
    pub fn log_to(&mut self, sink: LogSink) {
        let mut engine = IoEngine::new();
        let sink = engine.add_sink(sink);
        self.log = Some(Log { engine, sink });
    }

    /// Forgets the log (a create that failed).
    pub fn drop_log(&mut self) {
        self.log = None;
    }

    /// Gives back what the log's engine grew for a burst of output, when nothing waits to be
    /// copied ([`IoEngine::release_memory`]); taken again when output comes.
    /// The copy buffer goes too while no copy reads through it (an exec's output to its client,
    /// a relay): the next such copy takes it again.
    pub fn release_memory(&mut self) {
        if let Some(log) = &mut self.log {
            log.engine.release_memory();
        }
        let reads = self.copies.values().any(|copy| {
            matches!(
                copy,
                Copy::Output { .. } | Copy::Input(_) | Copy::ToClient(_)
            )
        });
        if !reads {
            self.buf = Vec::new();
        }
    }

    /// Reopens the log (after logrotate moved it); nothing without one.
    pub fn reopen_log(&mut self) -> io::Result<()> {
        match self.log.as_mut().and_then(|l| l.engine.sink_mut(l.sink)) {
            Some(sink) => sink.reopen(),
            None => Ok(()),
        }
    }

    /// Hands copies of what is written into the log out as [`Notice::Tapped`] while `on`.
    pub fn tap_log(&mut self, on: bool) {
        let Some(log) = &mut self.log else { return };
        for copy in self.copies.values() {
            if let Copy::Log(token) = copy {
                log.engine.set_tap(*token, on);
            }
        }
    }

    /// What the caller must act on since it last asked.
    pub fn take_notices(&mut self) -> Vec<Notice> {
        std::mem::take(&mut self.notices)
    }

    /// Whether there is copying to do before sleeping.
    pub fn has_backlog(&self) -> bool {
        !self.backlog.is_empty() || self.log.as_ref().is_some_and(|l| l.engine.has_backlog())
    }

    /// Copies what waits without an event to say so: new copies, budgets run out, and outputs
    /// held back for a reader whose time ran out ([`OutputRelay::deadline`]): such a relay stopped
    /// reading its pipe and its reader takes nothing, so no event of theirs would ever come.
    pub fn work_backlog(&mut self, registry: &Registry, mut frames: Option<&mut dyn Frames>) {
        let now = Instant::now();
        let mut due = std::mem::take(&mut self.backlog);
        due.extend(self.copies.iter().filter_map(|(n, copy)| match copy {
            Copy::Output { relay, .. } if relay.deadline().is_some_and(|at| at <= now) => Some(*n),
            _ => None,
        }));
        for n in due {
            self.ready(registry, n, reborrow(&mut frames));
        }
        if let Some(log) = &mut self.log {
            let events = log.engine.work_backlog(registry);
            self.on_log_events(events);
        }
        self.check_log_sink();
    }

    /// When the caller must look again at the latest.
    pub fn next_deadline(&self) -> Option<Instant> {
        let lingering = self
            .copies
            .values()
            .any(|copy| matches!(copy, Copy::Output { relay, .. } if relay.lingering()))
            .then(|| Instant::now() + LINGER_POLL);
        self.copies
            .values()
            .filter_map(|copy| match copy {
                Copy::Output { relay, .. } => relay.deadline(),
                _ => None,
            })
            .chain(lingering)
            .chain(self.log.as_ref().and_then(|l| l.engine.next_deadline()))
            .min()
    }

    fn take_number(&mut self, reads: bool) -> (usize, (Token, Token)) {
        if reads && self.buf.is_empty() {
            self.buf = vec![0; COPY_BUFFER];
        }
        let n = self.next;
        self.next += 1;
        (n, (self.tokens)(n))
    }

    /// Starts copying an output (`name` for diagnostics; `stream` "stdout", "stderr" or
    /// "terminal"); returns its number.
    pub fn add_output(
        &mut self,
        registry: &Registry,
        fd: OwnedFd,
        to: OutputTo,
        name: &str,
        stream: &'static str,
    ) -> io::Result<usize> {
        let (n, (source, dest)) = self.take_number(!matches!(to, OutputTo::Log));
        // A terminal's output is its stdout.
        let which = if stream == "stderr" {
            Stream::Stderr
        } else {
            Stream::Stdout
        };
        let copy = match to {
            OutputTo::Relay(destination) => {
                let mut relay = OutputRelay::new(fd, destination, stream)?;
                relay.register(registry, source, dest)?;
                let name = name.to_string();
                Copy::Output { relay, name }
            }
            OutputTo::Log => {
                let log = self
                    .log
                    .as_mut()
                    .ok_or_else(|| io::Error::other("no log to write to"))?;
                log.engine
                    .add_output(registry, source, fd, which, log.sink)?;
                Copy::Log(source)
            }
            OutputTo::Client(client) => {
                Copy::ToClient(ClientOutput::new(fd, which, client, registry, source)?)
            }
        };
        self.copies.insert(n, copy);
        // Output may be waiting already.
        self.backlog.push(n);
        Ok(n)
    }

    /// Starts copying an input into `writer`, the process's stdin; returns its number.
    pub fn add_input(
        &mut self,
        registry: &Registry,
        from: InputFrom,
        writer: File,
        terminal: bool,
    ) -> io::Result<usize> {
        let (n, (source, dest)) = self.take_number(matches!(from, InputFrom::Fifo(_)));
        let copy = match from {
            InputFrom::Fifo(fifo) => {
                let mut relay = InputRelay::new(fifo, writer)?;
                relay.register(registry, source, dest)?;
                Copy::Input(relay)
            }
            InputFrom::Client => {
                let mut input = ClientInput::new(writer, terminal)?;
                input.register(registry, source)?;
                Copy::FromClient(input)
            }
        };
        self.copies.insert(n, copy);
        self.backlog.push(n);
        Ok(n)
    }

    /// One of copy `n`'s tokens is ready.
    pub fn ready(&mut self, registry: &Registry, n: usize, frames: Option<&mut dyn Frames>) {
        match self.copies.get_mut(&n) {
            Some(Copy::Output { relay, name }) => {
                let turn = relay.pump(registry, &mut self.buf);
                if let Some(error) = turn.error {
                    self.notices
                        .push(Notice::Warn(format!("{name}: {error} (output is dropped)")));
                }
                if turn.dropping {
                    self.notices.push(Notice::Warn(format!(
                        "{name}: nothing read for {}s and {} MiB held; dropping whole lines until it is read",
                        relay::READER_GONE_AFTER.as_secs(),
                        relay::PENDING_LIMIT >> 20,
                    )));
                }
                if let Some(bytes) = turn.recovered {
                    self.notices.push(Notice::Warn(format!(
                        "{name}: {bytes} bytes were dropped while nobody read, said in the output (total {})",
                        relay.dropped()
                    )));
                }
                if turn.more {
                    self.backlog.push(n);
                } else if relay.closable() {
                    relay.close(registry);
                    self.copies.remove(&n);
                }
            }
            Some(Copy::Input(relay)) => {
                relay.pump(registry, &mut self.buf);
                if relay.is_closed() {
                    self.copies.remove(&n);
                }
            }
            Some(Copy::Log(token)) => {
                let token = *token;
                let Some(log) = &mut self.log else { return };
                let events = log.engine.handle(registry, token).unwrap_or_default();
                let open = log.engine.is_output_open(token);
                self.on_log_events(events);
                if !open {
                    self.copies.remove(&n);
                }
            }
            Some(Copy::ToClient(_)) => self.pump_client_output(registry, n, false, frames),
            Some(Copy::FromClient(input)) => {
                input.flush(registry);
                if input.is_closed() {
                    self.copies.remove(&n);
                }
                self.notices.push(Notice::InputTaken);
            }
            None => {}
        }
    }

    /// What the log engine saw: output for attach clients, a stream's end.
    fn on_log_events(&mut self, events: Vec<IoEvent>) {
        for event in events {
            match event {
                IoEvent::Data { stream, bytes, .. } => {
                    self.notices.push(Notice::Tapped { stream, bytes })
                }
                IoEvent::OutputClosed { stream, .. } => self.notices.push(Notice::Debug(format!(
                    "container {} reached end of stream",
                    stream.as_str()
                ))),
                IoEvent::InputClosed { .. } => {}
            }
        }
    }

    /// Says when the log could not be written, and when it could again.
    fn check_log_sink(&mut self) {
        let Some(sink) = self.log.as_mut().and_then(|l| l.engine.sink_mut(l.sink)) else {
            return;
        };
        let path = sink.path().display().to_string();
        if let Some(error) = sink.take_error() {
            self.notices.push(Notice::Warn(format!(
                "log {path}: {error} (output is dropped until it can be written again)"
            )));
        }
        if let Some(bytes) = sink.take_recovered() {
            self.notices.push(Notice::Warn(format!(
                "log {path}: written again; {bytes} bytes of output were dropped"
            )));
        }
    }

    /// Hands what a process wrote to its client while the client takes it (`force`: all there is,
    /// before the output is closed).
    fn pump_client_output(
        &mut self,
        registry: &Registry,
        n: usize,
        force: bool,
        mut frames: Option<&mut dyn Frames>,
    ) {
        let Some(Copy::ToClient(output)) = self.copies.get_mut(&n) else {
            return;
        };
        loop {
            let queued = match (output.client, frames.as_deref()) {
                (Some(client), Some(frames)) => frames.queued(client),
                _ => 0,
            };
            if !force && queued >= CLIENT_HIGH_WATER {
                return;
            }
            match output.read(&mut self.buf) {
                Taken::Data(len) => {
                    if let (Some(client), Some(frames)) = (output.client, reborrow(&mut frames)) {
                        frames.send(registry, client, output.stream, &self.buf[..len]);
                    }
                }
                Taken::Empty => return,
                Taken::End => {
                    output.close(registry);
                    self.copies.remove(&n);
                    return;
                }
            }
        }
    }

    /// Reads on for clients that caught up with their process's output.
    pub fn resume_clients(&mut self, registry: &Registry, mut frames: Option<&mut dyn Frames>) {
        let Some(door) = frames.as_deref() else {
            return;
        };
        let ready: Vec<usize> = self
            .copies
            .iter()
            .filter_map(|(n, copy)| match copy {
                Copy::ToClient(output) if output.is_open() => {
                    let queued = output.client.map_or(0, |c| door.queued(c));
                    (queued < CLIENT_HIGH_WATER / 2).then_some(*n)
                }
                _ => None,
            })
            .collect();
        for n in ready {
            self.pump_client_output(registry, n, false, reborrow(&mut frames));
        }
    }

    /// Input from a client for input copy `n`; false when it takes no more for now (the client
    /// is then not to be read until [`Notice::InputTaken`]).
    pub fn client_input(&mut self, registry: &Registry, n: usize, bytes: &[u8]) -> bool {
        let Some(Copy::FromClient(input)) = self.copies.get_mut(&n) else {
            return true;
        };
        input.push(bytes);
        input.flush(registry);
        let full = input.full();
        if input.is_closed() {
            self.copies.remove(&n);
        }
        !full
    }

    /// Whether input copy `n` takes more from its clients.
    pub fn takes_input(&self, n: usize) -> bool {
        match self.copies.get(&n) {
            Some(Copy::FromClient(input)) => !input.full(),
            _ => true,
        }
    }

    /// A client went away: what its processes write is read and dropped from now on.
    pub fn forget_client(&mut self, client: Token) {
        for copy in self.copies.values_mut() {
            if let Copy::ToClient(output) = copy {
                if output.client == Some(client) {
                    output.client = None;
                }
            }
        }
    }

    /// Whether output copy `n` still reads from its process.
    pub fn is_open(&self, n: usize) -> bool {
        match self.copies.get(&n) {
            Some(Copy::Output { relay, .. }) => relay.source_open(),
            Some(Copy::Log(token)) => self
                .log
                .as_ref()
                .is_some_and(|log| log.engine.is_output_open(*token)),
            Some(Copy::ToClient(output)) => output.is_open(),
            _ => false,
        }
    }

    /// Closes copy `n` at once (its process is gone and deleted).
    pub fn close(&mut self, registry: &Registry, n: usize) {
        match self.copies.remove(&n) {
            Some(Copy::Output { mut relay, .. }) => relay.close(registry),
            Some(Copy::Input(mut relay)) => relay.close(registry),
            Some(Copy::Log(token)) => {
                if let Some(log) = &mut self.log {
                    let events = log.engine.close_output(registry, token);
                    self.on_log_events(events);
                }
            }
            Some(Copy::ToClient(mut output)) => output.close(registry),
            Some(Copy::FromClient(mut input)) => input.close(registry),
            None => {}
        }
    }

    /// Stops reading a process's outputs whatever still holds them open, keeping what was read for
    /// their readers.
    pub fn close_sources(
        &mut self,
        registry: &Registry,
        outputs: &[usize],
        mut frames: Option<&mut dyn Frames>,
    ) {
        for &n in outputs {
            match self.copies.get_mut(&n) {
                Some(Copy::Output { relay, .. }) => {
                    let _ = relay.pump(registry, &mut self.buf);
                    relay.close_source(registry);
                    if relay.closable() {
                        relay.close(registry);
                        self.copies.remove(&n);
                    }
                }
                Some(Copy::ToClient(_)) => {
                    self.pump_client_output(registry, n, true, reborrow(&mut frames));
                    self.close(registry, n);
                }
                Some(Copy::Log(_)) => self.close(registry, n),
                _ => {}
            }
        }
    }

    /// Ends input copy `n` once what it holds is passed on (CloseIO, end of stdin).
    pub fn close_input(&mut self, registry: &Registry, n: usize) {
        match self.copies.get_mut(&n) {
            Some(Copy::Input(relay)) => {
                relay.close_after_flush(registry, &mut self.buf);
                if relay.is_closed() {
                    self.copies.remove(&n);
                }
            }
            Some(Copy::FromClient(input)) => {
                input.end();
                input.flush(registry);
                if input.is_closed() {
                    self.copies.remove(&n);
                }
            }
            _ => {}
        }
    }

    /// Whether a reaped process's `outputs` are delivered: its pipes are at end-of-file (or, once
    /// `grace_over` for orphans holding them, closed), nothing is held, and every fifo was read
    /// empty or its reader stalled since `exited`.
    pub fn delivered(
        &mut self,
        registry: &Registry,
        outputs: &[usize],
        exited: Instant,
        grace_over: bool,
        mut frames: Option<&mut dyn Frames>,
    ) -> bool {
        let now = Instant::now();
        let mut delivered = true;
        for &n in outputs {
            match self.copies.get_mut(&n) {
                Some(Copy::Output { relay, .. }) => {
                    if relay.source_open() && grace_over {
                        let _ = relay.pump(registry, &mut self.buf);
                        relay.close_source(registry);
                    }
                    delivered &= relay.delivered(now, exited);
                    if relay.closable() {
                        relay.close(registry);
                        self.copies.remove(&n);
                    }
                }
                // Written to the log or handed to the client once read: delivered at the pipe's end.
                Some(Copy::Log(_) | Copy::ToClient(_)) => {
                    if grace_over {
                        self.close_sources(registry, &[n], reborrow(&mut frames));
                    }
                    delivered &= !self.is_open(n);
                }
                _ => {} // finished and closed
            }
        }
        delivered
    }

    /// Closes the relays whose last output a reader took (it gets its end-of-file).
    pub fn close_delivered(&mut self, registry: &Registry) {
        self.copies.retain(|_, copy| {
            let Copy::Output { relay, .. } = copy else {
                return true;
            };
            if relay.lingering() && relay.closable() {
                relay.close(registry);
                return false;
            }
            true
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A door whose queue for its one client is set by the test.
    #[derive(Default)]
    struct Door {
        queued: usize,
        sent: Vec<(Stream, Vec<u8>)>,
    }

    impl Frames for Door {
        fn queued(&self, _: Token) -> usize {
            self.queued
        }

        fn send(&mut self, _: &Registry, _: Token, stream: Stream, bytes: &[u8]) {
            self.sent.push((stream, bytes.to_vec()));
        }

        fn cut_off(&mut self, _: &Registry, _: Token, _: &[u8]) {}
    }

    fn tokens(n: usize) -> (Token, Token) {
        (Token(2 * n), Token(2 * n + 1))
    }

    #[test]
    fn output_for_a_client_is_read_only_while_the_client_takes_it() {
        let poll = mio::Poll::new().unwrap();
        let mut copier = Copier::new(tokens);
        let (read_end, write_end) = nix::unistd::pipe().unwrap();
        let client = Some(Token(7));
        let n = copier
            .add_output(
                poll.registry(),
                read_end,
                OutputTo::Client(client),
                "exec",
                "stderr",
            )
            .unwrap();
        let mut writer = File::from(write_end);
        writer.write_all(b"hello").unwrap();
        let mut door = Door {
            queued: CLIENT_HIGH_WATER,
            ..Door::default()
        };
        copier.work_backlog(poll.registry(), Some(&mut door));
        assert!(door.sent.is_empty(), "read for a client that is behind");

        door.queued = 0;
        copier.resume_clients(poll.registry(), Some(&mut door));
        assert_eq!(door.sent, [(Stream::Stderr, b"hello".to_vec())]);

        drop(writer);
        assert!(copier.is_open(n));
        copier.ready(poll.registry(), n, Some(&mut door));
        assert!(!copier.is_open(n), "the end of the pipe closes the copy");
        assert!(copier.delivered(poll.registry(), &[n], Instant::now(), false, None));
    }

    #[test]
    fn a_client_that_is_gone_has_its_output_dropped_not_held() {
        let poll = mio::Poll::new().unwrap();
        let mut copier = Copier::new(tokens);
        let (read_end, write_end) = nix::unistd::pipe().unwrap();
        let client = Token(7);
        let n = copier
            .add_output(
                poll.registry(),
                read_end,
                OutputTo::Client(Some(client)),
                "exec",
                "stdout",
            )
            .unwrap();
        copier.forget_client(client);
        File::from(write_end).write_all(b"lost").unwrap();
        let mut door = Door {
            queued: CLIENT_HIGH_WATER,
            ..Door::default()
        };
        copier.work_backlog(poll.registry(), Some(&mut door));
        assert!(door.sent.is_empty());
        assert!(
            !copier.is_open(n),
            "read to its end although the door is behind"
        );
    }

    #[test]
    fn input_from_clients_is_held_to_its_bound_and_says_when_taken() {
        let poll = mio::Poll::new().unwrap();
        let mut copier = Copier::new(tokens);
        let (read_end, write_end) = nix::unistd::pipe().unwrap();
        let n = copier
            .add_input(
                poll.registry(),
                InputFrom::Client,
                File::from(write_end),
                false,
            )
            .unwrap();
        assert!(copier.client_input(poll.registry(), n, b"ab"));
        assert!(copier.takes_input(n));
        copier.close_input(poll.registry(), n);
        let mut read = String::new();
        std::io::Read::read_to_string(&mut File::from(read_end), &mut read).unwrap();
        assert_eq!(
            read, "ab",
            "end of input closes the process's stdin once written"
        );
    }

    #[test]
    fn output_to_the_log_needs_a_log() {
        let poll = mio::Poll::new().unwrap();
        let mut copier = Copier::new(tokens);
        let (read_end, _write_end) = nix::unistd::pipe().unwrap();
        let error = copier
            .add_output(poll.registry(), read_end, OutputTo::Log, "init", "stdout")
            .unwrap_err();
        assert_eq!(error.to_string(), "no log to write to");
    }
}
