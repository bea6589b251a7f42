//! The supervisor: one thread, one mio loop over the reaper's SIGCHLD, the stdio relays, the OOM
//! eventfd and the work its doors hand over. It alone owns the container, its processes and their
//! pipes, and it speaks only shim-core's words: [`ProcessKey`], [`Exit`], [`Event`],
//! [`shim_core::Error`]. What a door's wire says is the door's business (see [`crate::front`]).

mod cgroup;
pub mod diag;
mod logbinary;
pub mod mounts;
mod ops;
pub mod persist;
pub mod runtime;
mod spawn;
mod stdio;

pub use cgroup::Cgroup;
pub use spawn::{CreateSpec, Listing, RunSpec};
pub use stdio::StdioPlan;

use crate::oom::OomWatch;
use crate::tokens::{self, OOM, REAPER, WAKER};
use diag::Diag;
use mio::unix::SourceFd;
use mio::Token;
use mio::{Events, Interest, Poll};
use runtime::RuntimeOptions;
use shim_core::frame::FrameKind;
use shim_core::lifecycle::{self, Phase};
use shim_core::{Event, ExecId, Exit, ProcessKey};
use shim_io::client::{ClientInput, ClientOutput, Taken, CLIENT_HIGH_WATER};
use shim_io::relay::{self, InputRelay, OutputRelay};
use shim_io::{IoEngine, IoEvent, SinkId, Stream};
use shim_reaper::Reaper;
use shim_runc::Runc;
use std::collections::HashMap;
use std::fs::File;
use std::path::PathBuf;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};
use stdio::{Input, InputFrom, Output, OutputTo};

/// Work a door hands the supervisor's thread (a call to answer, with where its answer goes).
pub type Job = Box<dyn FnOnce(&mut Supervisor) + Send>;

/// A started process's relays: its outputs, its input, and its terminal.
pub type Connected = (Vec<usize>, Option<usize>, Option<File>);

/// Where a process's exit goes once it is recorded (a waiting client's answer).
pub type WaitAnswer = Box<dyn FnOnce(Exit) + Send>;

/// Where the supervisor's events go: a door's wire (containerd's task events).
pub trait EventSink: Send {
    fn publish(&mut self, container_id: &str, event: Event);
}

/// No one listens for events (`tether run`'s containers are seen through their state).
#[derive(Debug)]
pub struct NoEvents;

impl EventSink for NoEvents {
    fn publish(&mut self, _: &str, _: Event) {}
}

/// How often an exit whose output sits in a fifo looks whether the reader has taken it (a reader
/// emptying a fifo wakes nobody).
const DELIVERY_POLL: Duration = Duration::from_millis(5);
/// What a relay copies in one read.
const RELAY_BUFFER: usize = 64 * 1024;
/// How often a fifo that holds the last of a finished output is looked at, to close it (the
/// reader's end-of-file) once read.
const LINGER_POLL: Duration = Duration::from_millis(250);

/// One relay of the shim.
#[derive(Debug)]
pub enum Relay {
    /// Output to a fifo, file or pipe (containerd's).
    Output { relay: OutputRelay, name: String },
    /// A fifo's input to the process (containerd's).
    Input(InputRelay),
    /// Output into tether's log: the log engine copies it, under this relay's source token.
    Log(Token),
    /// Output to a control client, as frames.
    ToClient(ClientOutput),
    /// A control client's input to the process.
    FromClient(ClientInput),
}

/// tether's log and the engine that copies into it.
#[derive(Debug)]
pub struct LogOutput {
    pub engine: IoEngine,
    pub sink: SinkId,
}

/// The init or an exec.
pub struct Proc {
    pub key: ProcessKey,
    pub pid: i32,
    /// Created, Running or Paused; [`Proc::phase`] adds what the exit says.
    pub state: Phase,
    pub stdio: StdioPlan,
    /// Its output relays.
    pub outputs: Vec<usize>,
    pub input: Option<usize>,
    pub terminal: Option<File>,
    pub exit: Option<Exit>,
    pub pending_exit: Option<PendingExit>,
    pub waiters: Vec<WaitAnswer>,
    /// An exec's process, until it is started.
    pub spec: Option<oci_spec::runtime::Process>,
}

impl std::fmt::Debug for Proc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proc")
            .field("key", &self.key)
            .field("pid", &self.pid)
            .field("phase", &self.phase())
            .field("waiters", &self.waiters.len())
            .finish()
    }
}

impl Proc {
    pub fn new(key: ProcessKey, stdio: StdioPlan) -> Proc {
        Proc {
            key,
            pid: 0,
            state: Phase::Created,
            stdio,
            outputs: Vec::new(),
            input: None,
            terminal: None,
            exit: None,
            pending_exit: None,
            waiters: Vec::new(),
            spec: None,
        }
    }

    /// Where it is in its life, in the lifecycle rules' terms.
    pub fn phase(&self) -> Phase {
        if self.exit.is_some() {
            Phase::Exited
        } else if self.pending_exit.is_some() {
            Phase::Exiting
        } else {
            self.state
        }
    }

    /// It runs as `pid`, its stdio relayed; `pending_exit`: it exited already.
    pub fn runs(
        &mut self,
        pid: i32,
        (outputs, input, terminal): Connected,
        pending_exit: Option<PendingExit>,
    ) {
        self.pid = pid;
        self.outputs = outputs;
        self.input = input;
        self.terminal = terminal;
        self.pending_exit = pending_exit;
    }

    /// Records its exit and answers its waiters.
    pub fn exited(&mut self, exit: Exit) {
        self.exit = Some(exit);
        for waiter in self.waiters.drain(..) {
            waiter(exit);
        }
    }
}

/// An exit reaped and not yet recorded: its output is still on its way to the readers.
#[derive(Debug, Clone, Copy)]
pub struct PendingExit {
    pub exit: Exit,
    /// When it was reaped (a stalled reader's grace counts from here at the earliest).
    pub exited: Instant,
    /// When pipes an orphan still holds open are closed regardless.
    pub grace_over: Instant,
}

/// The container, from Create to Delete.
#[derive(Debug)]
pub struct Container {
    pub bundle: String,
    pub rootfs_mounted: bool,
    pub runc: Runc,
    pub options: RuntimeOptions,
    pub init: Proc,
    pub execs: HashMap<ExecId, Proc>,
    pub oom: Option<OomWatch>,
    /// An OOM kill happened in its cgroup.
    pub oom_killed: bool,
    /// No PID namespace of its own: the rest of its processes are killed at the init's exit.
    pub shares_pid_namespace: bool,
    /// Its cgroup, found while the init ran (Stats reads it).
    pub cgroup: Option<cgroup::Cgroup>,
    pub created_at: String,
    /// What `tether ps` shows of it.
    pub listing: Listing,
}

pub struct Supervisor {
    pub namespace: String,
    pub id: String,
    /// The bundle directory the shim runs in.
    pub bundle_dir: PathBuf,
    /// Where console sockets go (short paths: a bundle path can be too long for a socket).
    pub socket_dir: PathBuf,
    pub socket_stem: String,
    /// Where the runtime's pid files go.
    pub scratch_dir: PathBuf,
    pub diag: Diag,
    pub events: Box<dyn EventSink>,
    pub poll: Poll,
    pub reaper: Reaper,
    jobs: Receiver<Job>,
    /// The options containerd gave `start`; a Create request's own take precedence.
    pub default_options: RuntimeOptions,
    pub container: Option<Container>,
    /// The container's entry in tether's state directory, and its control socket.
    pub front: Option<crate::front::control::TetherFront>,
    /// tether's log, for a container `tether run` started.
    pub log: Option<LogOutput>,
    relays: HashMap<usize, Relay>,
    next_relay: usize,
    backlog: Vec<usize>,
    buf: Vec<u8>,
    /// The reaper's signalfd was readable. (Exits reaped while a runtime command was waited for
    /// are the reaper's own to tell: [`Supervisor::reap_due`].)
    reap_needed: bool,
    pub done: bool,
    /// When to give the kernel back the heap pages start-up freed: soon after the start, not
    /// during it, so the trim (a millisecond of CPU) is not on the path to the container's first
    /// output or its caller's answer.
    pub trim_at: Option<Instant>,
    /// Numbers the per-process scratch names (console sockets, exec pid files).
    pub scratch_serial: u64,
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervisor").field("id", &self.id).finish()
    }
}

/// What the supervisor is made from.
pub struct Parts {
    pub namespace: String,
    pub id: String,
    pub bundle_dir: PathBuf,
    pub socket_dir: PathBuf,
    pub socket_stem: String,
    pub scratch_dir: PathBuf,
    pub diag: Diag,
    pub events: Box<dyn EventSink>,
    pub poll: Poll,
    pub reaper: Reaper,
    pub jobs: Receiver<Job>,
    pub default_options: RuntimeOptions,
}

impl Supervisor {
    pub fn new(parts: Parts) -> Supervisor {
        Supervisor {
            namespace: parts.namespace,
            id: parts.id,
            bundle_dir: parts.bundle_dir,
            socket_dir: parts.socket_dir,
            socket_stem: parts.socket_stem,
            scratch_dir: parts.scratch_dir,
            diag: parts.diag,
            events: parts.events,
            poll: parts.poll,
            reaper: parts.reaper,
            jobs: parts.jobs,
            default_options: parts.default_options,
            container: None,
            front: None,
            log: None,
            relays: HashMap::new(),
            next_relay: 0,
            backlog: Vec::new(),
            // Made with the first relay that copies through it: `tether run`'s log is copied by
            // the engine, and a daemon that is never exec'd into keeps 64 KiB less resident.
            buf: Vec::new(),
            reap_needed: false,
            done: false,
            trim_at: None,
            scratch_serial: 0,
        }
    }

    /// Serves until the container is gone (Shutdown, or a delete through tether's door).
    pub fn run(&mut self) {
        let mut events = Events::with_capacity(64);
        while !self.done {
            let busy = !self.backlog.is_empty()
                || self.reap_due()
                || self.log.as_ref().is_some_and(|l| l.engine.has_backlog())
                || self.front.as_ref().is_some_and(|f| f.has_backlog());
            let timeout = if busy {
                Some(Duration::ZERO)
            } else {
                self.next_deadline()
                    .map(|at| at.saturating_duration_since(Instant::now()))
            };
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != std::io::ErrorKind::Interrupted {
                    self.diag.warn(format_args!("poll failed: {e}"));
                    return;
                }
            }
            for event in events.iter() {
                let token = event.token();
                match (token, tokens::relay_of(token)) {
                    (REAPER, _) => self.reap_needed = true,
                    (WAKER, _) => {}
                    (OOM, _) => self.check_oom(),
                    (_, Some(relay)) => self.relay_ready(relay),
                    (token, None) => self.front_ready(token),
                }
            }
            self.copy_waiting_output();
            if let Some(log) = &mut self.log {
                let events = log.engine.work_backlog(self.poll.registry());
                self.on_log_events(events);
            }
            self.front_backlog();
            if self.reap_due() {
                self.reap();
            }
            while let Ok(job) = self.jobs.try_recv() {
                job(self);
                if self.reap_due() {
                    self.reap();
                }
            }
            self.resume_client_outputs();
            self.front_tick();
            self.check_pending_exits();
            self.close_delivered();
            self.refresh_front();
            self.check_log_sink();
            if self.trim_at.is_some_and(|at| at <= Instant::now()) {
                self.trim_at = None;
                crate::sys::release_free_memory();
            }
        }
    }

    /// Copies what relays have waiting without an event to say so (new relays, budgets run out).
    pub fn copy_waiting_output(&mut self) {
        for relay in std::mem::take(&mut self.backlog) {
            self.relay_ready(relay);
        }
    }

    /// What the log engine saw: output for attach clients, a stream's end.
    fn on_log_events(&mut self, events: Vec<IoEvent>) {
        for event in events {
            match event {
                IoEvent::Data { stream, bytes, .. } => self.attach_output(stream, &bytes),
                IoEvent::OutputClosed { stream, .. } => self.diag.debug(format_args!(
                    "container {} reached end of stream",
                    stream.as_str()
                )),
                IoEvent::InputClosed { .. } => {}
            }
        }
    }

    /// Says when the log could not be written, and when it could again.
    fn check_log_sink(&mut self) {
        let Some(log) = &mut self.log else { return };
        let Some(sink) = log.engine.sink_mut(log.sink) else {
            return;
        };
        let path = sink.path().display().to_string();
        if let Some(error) = sink.take_error() {
            self.diag.warn(format_args!(
                "log {path}: {error} (output is dropped until it can be written again)"
            ));
        }
        if let Some(bytes) = sink.take_recovered() {
            self.diag.warn(format_args!(
                "log {path}: written again; {bytes} bytes of output were dropped"
            ));
        }
    }

    /// Reopens tether's log (after logrotate moved it); nothing without one.
    pub fn reopen_log(&mut self) -> std::io::Result<()> {
        match &mut self.log {
            Some(log) => match log.engine.sink_mut(log.sink) {
                Some(sink) => sink.reopen(),
                None => Ok(()),
            },
            None => Ok(()),
        }
    }

    /// Hands copies of the init's log output to the door (attach clients) while `on`.
    pub fn tap_log(&mut self, on: bool) {
        let Some(log) = &mut self.log else { return };
        for relay in self.relays.values() {
            if let Relay::Log(token) = relay {
                log.engine.set_tap(*token, on);
            }
        }
    }

    /// Closes relays whose last output a reader took (it gets its end-of-file).
    fn close_delivered(&mut self) {
        let registry = self.poll.registry();
        self.relays.retain(|_, relay| {
            let Relay::Output { relay, .. } = relay else {
                return true;
            };
            if relay.lingering() && relay.closable() {
                relay.close(registry);
                return false;
            }
            true
        });
    }

    fn next_deadline(&self) -> Option<Instant> {
        let lingering = self
            .relays
            .values()
            .any(|relay| matches!(relay, Relay::Output { relay, .. } if relay.lingering()))
            .then(|| Instant::now() + LINGER_POLL);
        let relays = self
            .relays
            .values()
            .filter_map(|relay| match relay {
                Relay::Output { relay, .. } => relay.deadline(),
                _ => None,
            })
            .chain(lingering)
            .chain(self.log.as_ref().and_then(|l| l.engine.next_deadline()));
        let front = self
            .front
            .as_ref()
            .and_then(|front| front.next_deadline())
            .into_iter()
            .chain(self.trim_at)
            .min();
        let Some(container) = self.container.as_ref() else {
            return relays.chain(front).min();
        };
        let exits = std::iter::once(&container.init)
            .chain(container.execs.values())
            .filter_map(|p| p.pending_exit.map(|pending| pending.grace_over));
        // An exit whose pipes are closed waits for its reader, who wakes nobody: look again soon.
        let delivering = std::iter::once(&container.init)
            .chain(container.execs.values())
            .any(|p| p.pending_exit.is_some() && !p.outputs.iter().any(|n| self.output_open(*n)));
        let poll_again = delivering.then(|| Instant::now() + DELIVERY_POLL);
        exits.chain(relays).chain(poll_again).chain(front).min()
    }

    fn next_relay(&mut self, copies: bool) -> (usize, Token) {
        if copies && self.buf.is_empty() {
            self.buf = vec![0; RELAY_BUFFER];
        }
        let n = self.next_relay;
        self.next_relay += 1;
        (n, tokens::relay_tokens(n).0)
    }

    /// Starts relaying an output; returns its number.
    pub fn add_output(
        &mut self,
        (fd, to): Output,
        name: String,
        stream: &'static str,
    ) -> std::io::Result<usize> {
        let (n, source) = self.next_relay(!matches!(to, OutputTo::Log));
        // A terminal's output is its stdout.
        let which = if stream == "stderr" {
            Stream::Stderr
        } else {
            Stream::Stdout
        };
        let relay = match to {
            OutputTo::Relay(destination) => {
                let mut relay = OutputRelay::new(fd, destination, stream)?;
                relay.register(self.poll.registry(), source, tokens::relay_tokens(n).1)?;
                Relay::Output { relay, name }
            }
            OutputTo::Log => {
                let log = self
                    .log
                    .as_mut()
                    .ok_or_else(|| std::io::Error::other("no log to write to"))?;
                log.engine
                    .add_output(self.poll.registry(), source, fd, which, log.sink)?;
                Relay::Log(source)
            }
            OutputTo::Client(client) => Relay::ToClient(ClientOutput::new(
                fd,
                which,
                client,
                self.poll.registry(),
                source,
            )?),
        };
        self.relays.insert(n, relay);
        // Output may be waiting already.
        self.backlog.push(n);
        Ok(n)
    }

    /// Starts relaying an input; returns its number.
    pub fn add_input(&mut self, (from, writer): Input, terminal: bool) -> std::io::Result<usize> {
        let (n, source) = self.next_relay(matches!(from, InputFrom::Fifo(_)));
        let relay = match from {
            InputFrom::Fifo(fifo) => {
                let mut relay = InputRelay::new(fifo, writer)?;
                relay.register(self.poll.registry(), source, tokens::relay_tokens(n).1)?;
                Relay::Input(relay)
            }
            InputFrom::Client => {
                let mut input = ClientInput::new(writer, terminal)?;
                input.register(self.poll.registry(), source)?;
                Relay::FromClient(input)
            }
        };
        self.relays.insert(n, relay);
        self.backlog.push(n);
        Ok(n)
    }

    fn relay_ready(&mut self, n: usize) {
        let registry = self.poll.registry();
        match self.relays.get_mut(&n) {
            Some(Relay::Output { relay, name }) => {
                let turn = relay.pump(registry, &mut self.buf);
                if let Some(error) = turn.error {
                    self.diag
                        .warn(format_args!("{name}: {error} (output is dropped)"));
                }
                if turn.dropping {
                    self.diag.warn(format_args!(
                        "{name}: nothing read for {}s and {} MiB held; dropping whole lines until it is read",
                        relay::READER_GONE_AFTER.as_secs(),
                        relay::PENDING_LIMIT >> 20,
                    ));
                }
                if let Some(bytes) = turn.recovered {
                    self.diag.warn(format_args!(
                        "{name}: read again; {bytes} bytes were dropped (total {})",
                        relay.dropped()
                    ));
                }
                if turn.more {
                    self.backlog.push(n);
                } else if relay.closable() {
                    relay.close(registry);
                    self.relays.remove(&n);
                }
            }
            Some(Relay::Input(relay)) => {
                relay.pump(registry, &mut self.buf);
                if relay.is_closed() {
                    self.relays.remove(&n);
                }
            }
            Some(Relay::Log(token)) => {
                let token = *token;
                let Some(log) = &mut self.log else { return };
                let events = log.engine.handle(registry, token).unwrap_or_default();
                let open = log.engine.is_output_open(token);
                self.on_log_events(events);
                if !open {
                    self.relays.remove(&n);
                }
            }
            Some(Relay::ToClient(_)) => self.pump_client_output(n, false),
            Some(Relay::FromClient(input)) => {
                input.flush(registry);
                let closed = input.is_closed();
                if closed {
                    self.relays.remove(&n);
                }
                self.client_input_drained();
            }
            None => {}
        }
    }

    /// Hands what a process wrote to its client, while the client takes it (`force`: all there is,
    /// before the output is closed).
    fn pump_client_output(&mut self, n: usize, force: bool) {
        let registry = self.poll.registry();
        let Some(Relay::ToClient(output)) = self.relays.get_mut(&n) else {
            return;
        };
        loop {
            let backlog = output
                .client
                .and_then(|client| self.front.as_ref()?.pending_output(client))
                .unwrap_or(0);
            if !force && backlog >= CLIENT_HIGH_WATER {
                return;
            }
            match output.read(&mut self.buf) {
                Taken::Data(len) => {
                    if let (Some(client), Some(front)) = (output.client, &mut self.front) {
                        let kind = frame_kind(output.stream);
                        front.send_frame(registry, client, kind, &self.buf[..len]);
                    }
                }
                Taken::Empty => return,
                Taken::End => {
                    output.close(registry);
                    self.relays.remove(&n);
                    return;
                }
            }
        }
    }

    /// Reads on for clients that caught up with their process's output.
    fn resume_client_outputs(&mut self) {
        let Some(front) = &self.front else { return };
        let ready: Vec<usize> = self
            .relays
            .iter()
            .filter_map(|(n, relay)| match relay {
                Relay::ToClient(output) if output.is_open() => {
                    let pending = output
                        .client
                        .and_then(|c| front.pending_output(c))
                        .unwrap_or(0);
                    (pending < CLIENT_HIGH_WATER / 2).then_some(*n)
                }
                _ => None,
            })
            .collect();
        for n in ready {
            self.pump_client_output(n, false);
        }
    }

    /// Input from a control client for a process's stdin relay `n`; false when it takes no more
    /// for now (the client is then not read until [`Supervisor::client_input_drained`]).
    pub fn client_input(&mut self, n: usize, bytes: &[u8]) -> bool {
        let registry = self.poll.registry();
        let Some(Relay::FromClient(input)) = self.relays.get_mut(&n) else {
            return true;
        };
        input.push(bytes);
        input.flush(registry);
        let full = input.full();
        if input.is_closed() {
            self.relays.remove(&n);
        }
        !full
    }

    /// Whether input relay `n` takes more from its clients.
    pub fn takes_input(&self, n: usize) -> bool {
        match self.relays.get(&n) {
            Some(Relay::FromClient(input)) => !input.full(),
            _ => true,
        }
    }

    /// A client went away: what its processes write is read and dropped from now on.
    pub fn forget_client(&mut self, client: Token) {
        for relay in self.relays.values_mut() {
            if let Relay::ToClient(output) = relay {
                if output.client == Some(client) {
                    output.client = None;
                }
            }
        }
    }

    /// Whether an output relay still reads from its process.
    fn output_open(&self, n: usize) -> bool {
        match self.relays.get(&n) {
            Some(Relay::Output { relay, .. }) => relay.source_open(),
            Some(Relay::Log(token)) => self
                .log
                .as_ref()
                .is_some_and(|log| log.engine.is_output_open(*token)),
            Some(Relay::ToClient(output)) => output.is_open(),
            _ => false,
        }
    }

    /// Closes a relay at once (its process is gone and deleted).
    pub fn close_relay(&mut self, n: usize) {
        let registry = self.poll.registry();
        match self.relays.remove(&n) {
            Some(Relay::Output { mut relay, .. }) => relay.close(registry),
            Some(Relay::Input(mut relay)) => relay.close(registry),
            Some(Relay::Log(token)) => {
                if let Some(log) = &mut self.log {
                    let events = log.engine.close_output(registry, token);
                    self.on_log_events(events);
                }
            }
            Some(Relay::ToClient(mut output)) => output.close(registry),
            Some(Relay::FromClient(mut input)) => input.close(registry),
            None => {}
        }
    }

    /// Stops reading a process's output whatever is still open, keeping what was read for the client.
    fn close_sources(&mut self, outputs: &[usize]) {
        for &n in outputs {
            match self.relays.get_mut(&n) {
                Some(Relay::Output { relay, .. }) => {
                    let _ = relay.pump(self.poll.registry(), &mut self.buf);
                    relay.close_source(self.poll.registry());
                    if relay.closable() {
                        relay.close(self.poll.registry());
                        self.relays.remove(&n);
                    }
                }
                Some(Relay::ToClient(_)) => {
                    self.pump_client_output(n, true);
                    self.close_relay(n);
                }
                Some(Relay::Log(_)) => self.close_relay(n),
                _ => {}
            }
        }
    }

    /// Ends a process's input once what its client wrote is passed on (CloseIO, end of stdin).
    pub fn close_input(&mut self, n: usize) {
        let registry = self.poll.registry();
        match self.relays.get_mut(&n) {
            Some(Relay::Input(relay)) => {
                relay.close_after_flush(registry, &mut self.buf);
                if relay.is_closed() {
                    self.relays.remove(&n);
                }
            }
            Some(Relay::FromClient(input)) => {
                input.end();
                input.flush(registry);
                if input.is_closed() {
                    self.relays.remove(&n);
                }
            }
            _ => {}
        }
    }

    pub fn register_oom(&mut self, pid: i32) -> Option<OomWatch> {
        let watch = OomWatch::new(pid)
            .map_err(|e| self.diag.debug(format_args!("no OOM notifications: {e}")))
            .ok()?;
        self.poll
            .registry()
            .register(&mut SourceFd(&watch.fd()), OOM, Interest::READABLE)
            .ok()?;
        Some(watch)
    }

    fn check_oom(&mut self) {
        let Some(container) = &mut self.container else {
            return;
        };
        if container.oom.as_mut().is_some_and(OomWatch::fired) {
            container.oom_killed = true;
            self.diag
                .info(format_args!("container {} ran out of memory", self.id));
            self.events.publish(&self.id, Event::Oom);
        }
    }

    /// Starts watching a new process's pid; its exit, if it came already (reaped while the runtime
    /// was waited for), is returned as pending.
    pub fn watch(&mut self, pid: i32, key: &ProcessKey) -> Option<PendingExit> {
        self.reaper.watch(pid).map(|exit| pending_exit(exit, key))
    }

    /// Whether exits wait to be collected: SIGCHLD came, or a runtime command's wait reaped some.
    fn reap_due(&self) -> bool {
        self.reap_needed || self.reaper.has_ready()
    }

    /// Collects exits: an exec's or the init's exit is recorded once its output is complete.
    pub fn reap(&mut self) {
        self.reap_needed = false;
        let exits = match self.reaper.reap() {
            Ok(exits) => exits,
            Err(e) => {
                self.diag.warn(format_args!("reap: {e}"));
                return;
            }
        };
        let Some(container) = &mut self.container else {
            return;
        };
        let mut init_exited = false;
        for exit in exits {
            let proc = if container.init.pid == exit.pid {
                Some(&mut container.init)
            } else {
                container.execs.values_mut().find(|p| p.pid == exit.pid)
            };
            if let Some(proc) = proc {
                if proc.exit.is_none() && proc.pending_exit.is_none() {
                    proc.pending_exit = Some(pending_exit(exit, &proc.key));
                    init_exited |= proc.key.is_init();
                }
            }
        }
        if init_exited && container.shares_pid_namespace {
            self.kill_the_rest();
        }
        self.check_pending_exits();
    }

    /// The init of a container without its own PID namespace exited: nothing ends its other
    /// processes (the kernel does that only for a namespace's init), and they may hold its output
    /// pipes open. Kill them, as runc's shim does, before waiting for the output.
    fn kill_the_rest(&mut self) {
        let Some(container) = &self.container else {
            return;
        };
        let runc = container.runc.clone();
        let kill = shim_runc::KillOptions::new(9).all(true);
        if let Err(e) = runc.kill(&self.id, kill, &mut runtime::ReaperWait(&mut self.reaper)) {
            self.diag.debug(format_args!(
                "kill the rest of {} at its init's exit: {e}",
                self.id
            ));
        }
    }

    /// Records the exits whose output is complete, or whose grace period is over. Exec exits come
    /// first: the init's waits for every exec's.
    pub fn check_pending_exits(&mut self) {
        let Some(container) = &self.container else {
            return;
        };
        let now = Instant::now();
        let pending: Vec<(ProcessKey, PendingExit, Vec<usize>)> = container
            .execs
            .values()
            .filter_map(|p| Some((p.key.clone(), p.pending_exit?, p.outputs.clone())))
            .collect();
        for (key, pending, outputs) in pending {
            let output = self.output_state(&outputs, pending, now);
            if lifecycle::exit_may_be_recorded(&key, output, false) {
                self.record_exit(&key);
            }
        }
        let Some(container) = &self.container else {
            return;
        };
        if let Some(pending) = container.init.pending_exit {
            let outputs = container.init.outputs.clone();
            let execs_running = container
                .execs
                .values()
                .any(|p| p.phase() == Phase::Running);
            let output = self.output_state(&outputs, pending, now);
            if lifecycle::exit_may_be_recorded(&ProcessKey::Init, output, execs_running) {
                self.record_exit(&ProcessKey::Init);
            }
        }
    }

    /// Where a reaped process's output is: delivered when its pipes are at EOF (or closed once the
    /// grace for orphans holding them is over), nothing is held, and every fifo was read empty or
    /// its reader stalled.
    fn output_state(
        &mut self,
        outputs: &[usize],
        pending: PendingExit,
        now: Instant,
    ) -> lifecycle::Output {
        let PendingExit {
            exited, grace_over, ..
        } = pending;
        let mut delivered = true;
        for &n in outputs {
            let grace = now >= grace_over;
            match self.relays.get_mut(&n) {
                Some(Relay::Output { relay, .. }) => {
                    let registry = self.poll.registry();
                    if relay.source_open() && grace {
                        let _ = relay.pump(registry, &mut self.buf);
                        relay.close_source(registry);
                    }
                    delivered &= relay.delivered(now, exited);
                    if relay.closable() {
                        relay.close(registry);
                        self.relays.remove(&n);
                    }
                }
                // Written to the log or handed to the client once read: delivered at the pipe's end.
                Some(Relay::Log(_) | Relay::ToClient(_)) => {
                    if grace {
                        self.close_sources(&[n]);
                    }
                    delivered &= !self.output_open(n);
                }
                _ => {} // finished and closed
            }
        }
        lifecycle::Output {
            delivered,
            grace_over: now >= grace_over,
        }
    }

    pub(crate) fn record_exit(&mut self, key: &ProcessKey) {
        if lifecycle::oom_before_exit(key) {
            self.check_oom();
        }
        let Some(container) = &mut self.container else {
            return;
        };
        let proc = match key {
            ProcessKey::Init => &mut container.init,
            ProcessKey::Exec(id) => match container.execs.get_mut(id) {
                Some(proc) => proc,
                None => return,
            },
        };
        let Some(PendingExit { exit, .. }) = proc.pending_exit.take() else {
            return;
        };
        proc.exited(exit);
        let outputs = proc.outputs.clone();
        self.close_sources(&outputs);
        self.events.publish(
            &self.id,
            Event::Exited {
                key: key.clone(),
                exit,
            },
        );
        if key.is_init() {
            self.refresh_front();
        }
        self.front_exited(key, exit);
        self.diag.debug(format_args!(
            "{key} (pid {}) exited: {}",
            exit.pid, exit.status
        ));
    }
}

/// The frame that carries a process's output to a control client.
pub(crate) fn frame_kind(stream: Stream) -> FrameKind {
    match stream {
        Stream::Stdout => FrameKind::Stdout,
        Stream::Stderr => FrameKind::Stderr,
    }
}

pub(crate) fn pending_exit(exit: Exit, key: &ProcessKey) -> PendingExit {
    let grace = lifecycle::output_grace(key);
    let exited = Instant::now();
    PendingExit {
        exit,
        exited,
        // Saturating: an Instant this far ahead cannot overflow in practice, but never panic.
        grace_over: exited.checked_add(grace).unwrap_or(exited),
    }
}
