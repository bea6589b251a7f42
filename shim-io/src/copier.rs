//! The one copier: every stdio stream of every process a shim supervises, whatever its other end —
//! a fifo, file or logging pipe, the log, a client's frames, nowhere (a [`Destination`]) — under
//! numbers it hands out, so the supervisor holds one number per stream and never asks what is
//! behind it. Every output is read by the same pump ([`output`](crate::output)) through one
//! buffer, with one budget per turn; every input goes through one path
//! ([`input`](crate::input)).
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
//! use shim_io::copier::Copier;
//! use shim_io::{Destination, LogFormat, LogSink, SinkOptions};
//! use std::io::Write;
//! use std::time::Instant;
//!
//! let dir = tempfile::tempdir()?;
//! let out = dir.path().join("out.log");
//! let log = dir.path().join("ctr.log");
//! let mut poll = Poll::new()?;
//! let mut copier = Copier::new(|n| (Token(2 * n), Token(2 * n + 1)));
//! copier.log_to(LogSink::open(&log, SinkOptions::new(LogFormat::Cri))?);
//! let (stdout, stdout_writer) = nix::unistd::pipe()?;
//! let (stderr, stderr_writer) = nix::unistd::pipe()?;
//! let to_file = Destination::open(&format!("file://{}", out.display()))?;
//! let outputs = [
//!     copier.add_output(poll.registry(), stdout, to_file, "out", "stdout")?,
//!     copier.add_output(poll.registry(), stderr, Destination::Log, "err", "stderr")?,
//! ];
//! std::fs::File::from(stdout_writer).write_all(b"hello\n")?; // and the process is gone: EOF
//! std::fs::File::from(stderr_writer).write_all(b"no newline")?;
//! let mut events = Events::with_capacity(8);
//! let now = Instant::now();
//! while !copier.delivered(poll.registry(), &outputs, now, false, None) {
//!     copier.work_backlog(poll.registry(), None);
//!     poll.poll(&mut events, Some(std::time::Duration::from_millis(10)))?;
//!     for event in events.iter() {
//!         copier.ready(poll.registry(), event.token().0 / 2, None);
//!     }
//! }
//! assert_eq!(std::fs::read(&out)?, b"hello\n");
//! let text = std::fs::read_to_string(&log)?;
//! assert_eq!(&text[31..], "stderr P no newline\n");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use crate::destination::{Destination, InputFrom};
use crate::input::Input;
use crate::output::{Cx, Output, Reach, Turn};
use crate::relay::{PENDING_LIMIT, READER_GONE_AFTER};
use crate::{LogSink, Stream};
use mio::{Registry, Token};
use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

/// How often a fifo that holds the last of a finished output is looked at, to close it (the
/// reader's end-of-file) once read.
const LINGER_POLL: Duration = Duration::from_millis(250);

/// What the caller must act on.
#[derive(Debug, PartialEq, Eq)]
pub enum Notice {
    /// Something for the shim's log at warning level.
    Warn(String),
    /// Something for the shim's log at debug level.
    Debug(String),
    /// Output read into the log while tapped ([`Copier::tap_log`]), for attached clients.
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
    Output(Output),
    Input(Input),
}

/// Every copy of a shim's processes (see the module docs for its loop contract).
#[derive(Debug)]
pub struct Copier {
    copies: HashMap<usize, Copy>,
    next: usize,
    /// Copies with more to do without an event to say so (new ones, budgets run out).
    backlog: Vec<usize>,
    /// The one read buffer, made when something is first read and given back when quiet
    /// ([`Copier::release_memory`]): a shim whose processes write nothing keeps it unmade.
    buf: Vec<u8>,
    log: Option<LogSink>,
    /// Whether output into the log is handed out as [`Notice::Tapped`].
    log_tapped: bool,
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
            log_tapped: false,
            tokens,
            notices: Vec::new(),
        }
    }

    /// Outputs to [`Destination::Log`] are written into `sink` from now on.
    pub fn log_to(&mut self, sink: LogSink) {
        self.log = Some(sink);
    }

    /// Forgets the log (a create that failed).
    pub fn drop_log(&mut self) {
        self.log = None;
    }

    /// The log, while there is one.
    pub fn log(&self) -> Option<&LogSink> {
        self.log.as_ref()
    }

    /// Gives back what a burst of work grew, when nothing waits to be copied: the read buffer and
    /// the log's record buffers, each taken again when output comes.
    pub fn release_memory(&mut self) {
        if !self.backlog.is_empty() {
            return;
        }
        self.buf = Vec::new();
        if let Some(sink) = &mut self.log {
            sink.release_memory();
        }
    }

    /// Reopens the log (after logrotate moved it); nothing without one.
    pub fn reopen_log(&mut self) -> io::Result<()> {
        match &mut self.log {
            Some(sink) => sink.reopen(),
            None => Ok(()),
        }
    }

    /// Hands copies of what is written into the log out as [`Notice::Tapped`] while `on`. While
    /// tapped, a raw log is written through memory instead of spliced.
    pub fn tap_log(&mut self, on: bool) {
        self.log_tapped = on;
        for copy in self.copies.values_mut() {
            if let Copy::Output(output) = copy {
                if matches!(output.to, Destination::Log) {
                    output.tapped = on;
                }
            }
        }
    }

    /// What the caller must act on since it last asked.
    pub fn take_notices(&mut self) -> Vec<Notice> {
        std::mem::take(&mut self.notices)
    }

    /// Whether there is copying to do before sleeping.
    pub fn has_backlog(&self) -> bool {
        !self.backlog.is_empty()
    }

    /// Copies what waits without an event to say so: new copies, budgets run out, log outputs
    /// held back to gather, and outputs held for a reader whose time ran out
    /// ([`READER_GONE_AFTER`]): such an output stopped reading its pipe and its reader takes
    /// nothing, so no event of theirs would ever come.
    pub fn work_backlog(&mut self, registry: &Registry, mut frames: Option<&mut dyn Frames>) {
        let now = Instant::now();
        let mut due = std::mem::take(&mut self.backlog);
        for (n, copy) in &mut self.copies {
            let Copy::Output(output) = copy else { continue };
            let resumed = output.resume_if_due(registry, now);
            if resumed || output.deadline().is_some_and(|at| at <= now) {
                due.push(*n);
            }
        }
        due.sort_unstable();
        due.dedup();
        for n in due {
            self.ready(registry, n, reborrow(&mut frames));
        }
        self.check_log_sink();
    }

    /// When the caller must look again at the latest.
    pub fn next_deadline(&self) -> Option<Instant> {
        let outputs = || {
            self.copies.values().filter_map(|copy| match copy {
                Copy::Output(output) => Some(output),
                Copy::Input(_) => None,
            })
        };
        let lingering = outputs()
            .any(Output::lingering)
            .then(|| Instant::now() + LINGER_POLL);
        outputs()
            .filter_map(Output::deadline)
            .chain(lingering)
            .min()
    }

    fn take_number(&mut self) -> (usize, (Token, Token)) {
        let n = self.next;
        self.next += 1;
        (n, (self.tokens)(n))
    }

    /// Starts copying an output into `to` (`name` for diagnostics; `label` "stdout", "stderr" or
    /// "terminal", a terminal's output counting as stdout); returns its number.
    pub fn add_output(
        &mut self,
        registry: &Registry,
        fd: OwnedFd,
        to: Destination,
        name: &str,
        label: &'static str,
    ) -> io::Result<usize> {
        if matches!(to, Destination::Log) && self.log.is_none() {
            return Err(io::Error::other("no log to write to"));
        }
        let (n, tokens) = self.take_number();
        let mut output = Output::new(registry, fd, to, tokens, label, name)?;
        output.tapped = self.log_tapped && matches!(output.to, Destination::Log);
        self.copies.insert(n, Copy::Output(output));
        // Output may be waiting already; edge-triggered readiness would not report it.
        self.backlog.push(n);
        Ok(n)
    }

    /// Starts copying an input into `writer`, the process's stdin (`terminal`: its terminal);
    /// returns its number.
    pub fn add_input(
        &mut self,
        registry: &Registry,
        from: InputFrom,
        writer: File,
        terminal: bool,
    ) -> io::Result<usize> {
        let (n, (source, dest)) = self.take_number();
        let mut input = Input::new(from, writer, terminal)?;
        input.register(registry, source, dest)?;
        self.copies.insert(n, Copy::Input(input));
        self.backlog.push(n);
        Ok(n)
    }

    /// One of copy `n`'s tokens is ready.
    pub fn ready(&mut self, registry: &Registry, n: usize, frames: Option<&mut dyn Frames>) {
        self.pump(registry, n, Reach::Turn, frames);
    }

    /// Gives copy `n` a turn; an output that is done is closed.
    fn pump(
        &mut self,
        registry: &Registry,
        n: usize,
        reach: Reach,
        frames: Option<&mut dyn Frames>,
    ) {
        match self.copies.get_mut(&n) {
            Some(Copy::Output(output)) => {
                let mut cx = Cx {
                    registry,
                    buf: &mut self.buf,
                    log: self.log.as_mut(),
                    frames: frames.map(|frames| frames as &mut dyn Frames),
                    notices: &mut self.notices,
                    now: Instant::now(),
                    reach,
                };
                let turn = output.pump(&mut cx);
                Self::report(&mut self.notices, output, &turn);
                if turn.more {
                    self.backlog.push(n);
                } else if output.done() {
                    output.close(registry);
                    self.copies.remove(&n);
                }
            }
            Some(Copy::Input(input)) => {
                input.pump(registry, &mut self.buf);
                if input.takes_frames() {
                    self.notices.push(Notice::InputTaken);
                }
                if input.is_closed() {
                    self.copies.remove(&n);
                }
            }
            None => {}
        }
    }

    /// Says what a turn of `output` did that the shim's log should tell.
    fn report(notices: &mut Vec<Notice>, output: &Output, turn: &Turn) {
        let name = &output.name;
        if let Some(error) = &turn.error {
            notices.push(Notice::Warn(format!("{name}: {error} (output is dropped)")));
        }
        if turn.dropping {
            notices.push(Notice::Warn(format!(
                "{name}: nothing read for {}s and {} MiB held; dropping whole lines until it is read",
                READER_GONE_AFTER.as_secs(),
                PENDING_LIMIT >> 20,
            )));
        }
        if let Some(bytes) = turn.recovered {
            notices.push(Notice::Warn(format!(
                "{name}: {bytes} bytes were dropped while nobody read, said in the output (total {})",
                output.dropped()
            )));
        }
    }

    /// Says when the log could not be written, and when it could again.
    fn check_log_sink(&mut self) {
        let Some(sink) = &mut self.log else {
            return;
        };
        if let Some(error) = sink.take_error() {
            let path = sink.path().display();
            self.notices.push(Notice::Warn(format!(
                "log {path}: {error} (output is dropped until it can be written again)"
            )));
        }
        if let Some(bytes) = sink.take_recovered() {
            let path = sink.path().display();
            self.notices.push(Notice::Warn(format!(
                "log {path}: written again; {bytes} bytes of output were dropped"
            )));
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
                Copy::Output(output) if output.source_open() => match output.to {
                    Destination::Client(client) => {
                        (door.queued(client) < crate::client::CLIENT_HIGH_WATER / 2).then_some(*n)
                    }
                    _ => None,
                },
                _ => None,
            })
            .collect();
        for n in ready {
            self.ready(registry, n, reborrow(&mut frames));
        }
    }

    /// Input from a client for input copy `n`; false when it takes no more for now (the client
    /// is then not to be read until [`Notice::InputTaken`]).
    pub fn client_input(&mut self, registry: &Registry, n: usize, bytes: &[u8]) -> bool {
        let Some(Copy::Input(input)) = self.copies.get_mut(&n) else {
            return true;
        };
        input.push(bytes);
        input.pump(registry, &mut self.buf);
        let full = input.full();
        if input.is_closed() {
            self.copies.remove(&n);
        }
        !full
    }

    /// Whether input copy `n` takes more from its clients.
    pub fn takes_input(&self, n: usize) -> bool {
        match self.copies.get(&n) {
            Some(Copy::Input(input)) => !input.full(),
            _ => true,
        }
    }

    /// A client went away: what its processes write is read and dropped from now on.
    pub fn forget_client(&mut self, client: Token) {
        for copy in self.copies.values_mut() {
            if let Copy::Output(output) = copy {
                if matches!(output.to, Destination::Client(c) if c == client) {
                    output.to = Destination::Discard;
                }
            }
        }
    }

    /// Whether output copy `n` still reads from its process.
    pub fn is_open(&self, n: usize) -> bool {
        matches!(self.copies.get(&n), Some(Copy::Output(output)) if output.source_open())
    }

    /// Closes copy `n` at once (its process is gone and deleted). What a log output's pipe still
    /// holds is logged first; what is held for anything else is lost.
    pub fn close(&mut self, registry: &Registry, n: usize) {
        if matches!(self.copies.get(&n), Some(Copy::Output(o)) if matches!(o.to, Destination::Log))
        {
            self.close_sources(registry, &[n], None);
        }
        match self.copies.remove(&n) {
            Some(Copy::Output(mut output)) => output.close(registry),
            Some(Copy::Input(mut input)) => input.close(registry),
            None => {}
        }
    }

    /// Stops reading a process's outputs whatever still holds them open, passing on what they
    /// hold now.
    pub fn close_sources(
        &mut self,
        registry: &Registry,
        outputs: &[usize],
        mut frames: Option<&mut dyn Frames>,
    ) {
        for &n in outputs {
            self.pump(registry, n, Reach::All, reborrow(&mut frames));
            let Some(Copy::Output(output)) = self.copies.get_mut(&n) else {
                continue;
            };
            let mut turn = Turn::default();
            let mut cx = Cx {
                registry,
                buf: &mut self.buf,
                log: self.log.as_mut(),
                frames: reborrow(&mut frames),
                notices: &mut self.notices,
                now: Instant::now(),
                reach: Reach::All,
            };
            output.end(&mut cx, &mut turn);
            Self::report(&mut self.notices, output, &turn);
            if output.done() {
                output.close(registry);
                self.copies.remove(&n);
            }
        }
    }

    /// Ends input copy `n` once what it holds is passed on (CloseIO, end of stdin).
    pub fn close_input(&mut self, registry: &Registry, n: usize) {
        if let Some(Copy::Input(input)) = self.copies.get_mut(&n) {
            input.end(registry, &mut self.buf);
            if input.is_closed() {
                self.copies.remove(&n);
            }
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
        let open: Vec<usize> = outputs
            .iter()
            .copied()
            .filter(|n| self.is_open(*n))
            .collect();
        if grace_over {
            self.close_sources(registry, &open, reborrow(&mut frames));
        } else {
            // The process is gone, so its pipes are most likely at their end already: read them
            // now rather than wait a turn for the events that say so.
            for &n in &open {
                self.pump(registry, n, Reach::Turn, reborrow(&mut frames));
            }
        }
        let now = Instant::now();
        let mut delivered = true;
        for &n in outputs {
            let Some(Copy::Output(output)) = self.copies.get_mut(&n) else {
                continue; // finished and closed
            };
            delivered &= output.delivered(now, exited);
            if output.done() {
                output.close(registry);
                self.copies.remove(&n);
            }
        }
        delivered
    }

    /// Closes the outputs whose last output a reader took (it gets its end-of-file).
    pub fn close_delivered(&mut self, registry: &Registry) {
        self.copies.retain(|_, copy| {
            let Copy::Output(output) = copy else {
                return true;
            };
            if output.lingering() && output.done() {
                output.close(registry);
                return false;
            }
            true
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::CLIENT_HIGH_WATER;
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
        let client = Token(7);
        let n = copier
            .add_output(
                poll.registry(),
                read_end,
                Destination::Client(client),
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
                Destination::Client(client),
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

    /// Waits (at most 10 s) until the other end of `pipe` is closed for good: POLLERR on a write
    /// end, POLLHUP on a read end (`interest` says which end it is). In a test process other
    /// threads may briefly hold a reference to a closed end (the kernel releases a file when its
    /// last user lets go), so the event is awaited, not assumed.
    fn await_other_end_closed(pipe: &impl std::os::fd::AsFd, interest: nix::poll::PollFlags) {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        let gone = PollFlags::POLLERR | PollFlags::POLLHUP;
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let mut fds = [PollFd::new(pipe.as_fd(), interest)];
            if poll(&mut fds, PollTimeout::from(100u16)).is_ok()
                && fds[0].revents().is_some_and(|r| r.intersects(gone))
            {
                return;
            }
        }
        panic!("the other end never closed");
    }

    #[test]
    fn input_is_held_up_to_its_bound_and_closed_when_the_process_is_gone() {
        let poll = mio::Poll::new().unwrap();
        let mut copier = Copier::new(tokens);
        let (read_end, write_end) = crate::fdio::pipe().unwrap();
        let watch = write_end.try_clone().unwrap();
        let n = copier
            .add_input(poll.registry(), InputFrom::Client, write_end.into(), false)
            .unwrap();
        let limit = crate::input::INPUT_LIMIT;
        assert!(
            !copier.client_input(poll.registry(), n, &vec![b'x'; limit * 2]),
            "a pipe takes 64 KiB: the rest is held, clients wait"
        );
        assert!(!copier.takes_input(n));
        drop(read_end);
        await_other_end_closed(&watch, nix::poll::PollFlags::POLLOUT);
        copier.ready(poll.registry(), n, None);
        assert_eq!(copier.take_notices(), [Notice::InputTaken]);
        assert!(
            copier.takes_input(n),
            "nothing more can be delivered: closed"
        );
        assert!(copier.copies.is_empty());
    }

    #[test]
    fn output_with_nothing_written_yet_is_open_until_its_end() {
        let poll = mio::Poll::new().unwrap();
        let mut copier = Copier::new(tokens);
        let (read_end, write_end) = crate::fdio::pipe().unwrap();
        let watch = read_end.try_clone().unwrap();
        let n = copier
            .add_output(
                poll.registry(),
                read_end,
                Destination::Client(Token(7)),
                "exec",
                "stderr",
            )
            .unwrap();
        copier.work_backlog(poll.registry(), None);
        assert!(copier.is_open(n), "an empty pipe is not its end");
        drop(write_end);
        await_other_end_closed(&watch, nix::poll::PollFlags::POLLIN);
        copier.ready(poll.registry(), n, None);
        assert!(!copier.is_open(n));
    }

    #[test]
    fn output_to_the_log_needs_a_log() {
        let poll = mio::Poll::new().unwrap();
        let mut copier = Copier::new(tokens);
        let (read_end, _write_end) = nix::unistd::pipe().unwrap();
        let error = copier
            .add_output(
                poll.registry(),
                read_end,
                Destination::Log,
                "init",
                "stdout",
            )
            .unwrap_err();
        assert_eq!(error.to_string(), "no log to write to");
    }
}
