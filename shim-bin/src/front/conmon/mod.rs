//! podman's door: tether as podman's conmon (the same binary, run as `conmon`). podman's contract
//! (docs/podman.md) has a command line ([`args`]), a start and sync pipe pair, an attach socket
//! ([`attach`]), a ctl fifo ([`ctl`]) and a few files ([`files`]); the container's monitor is the
//! supervisor every door shares, with its output in podman's k8s-file log.
//!
//! This module is the door's place in the supervisor's loop: attach clients joined to the
//! supervisor's fan-out, their input handed to the container's stdin, the ctl fifo's resizes, the
//! signals passed on, and the exit kept for the exit file.

pub mod args;
pub mod attach;
pub mod ctl;
pub mod files;

use crate::shim::door::{Door, DoorHooks};
use crate::shim::tokens::Tokens;
use crate::shim::tokens::{ATTACH_CONNECTIONS, ATTACH_LISTENER, CTL_FIFO, SIGNALS};
use crate::shim::Supervisor;
use attach::{AttachClient, AttachListener, Read};
use ctl::{Control, CtlFifo};
use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use shim_core::frame::FrameKind;
use shim_core::{Exit, ProcessKey};
use shim_io::Stream;
use std::collections::HashMap;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::{Duration, Instant};

/// How long attach clients may take the last output once the container exited.
const LAST_OUTPUT_WAIT: Duration = Duration::from_secs(2);

/// The signals podman may send the monitor, passed on to the container.
const PASSED_ON: [Signal; 3] = [Signal::SIGTERM, Signal::SIGINT, Signal::SIGQUIT];

/// The door's state, as the supervisor holds it.
pub struct ConmonFront {
    listener: Option<AttachListener>,
    clients: HashMap<Token, AttachClient>,
    tokens: Tokens,
    ctl: Option<CtlFifo>,
    signals: Option<SignalFd>,
    /// `-i` without `--leave-stdin-open`: the first client's half-close ends the container's stdin.
    close_stdin_on_end: bool,
    /// An exec session's monitor: its process is signalled itself (the runtime's kill would
    /// reach the container's init).
    exec: bool,
    /// The init's exit code as the exit file says it: -1 when `--timeout` killed it.
    pub exit_code: Option<i32>,
}

impl std::fmt::Debug for ConmonFront {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConmonFront")
            .field("clients", &self.clients.len())
            .field("exit_code", &self.exit_code)
            .finish()
    }
}

impl ConmonFront {
    /// Opens the attach socket and the ctl fifo in `bundle`, and takes SIGTERM, SIGINT and
    /// SIGQUIT to pass on. Nothing is left behind on an error.
    pub fn open(
        bundle: &Path,
        registry: &Registry,
        close_stdin_on_end: bool,
        exec: bool,
    ) -> Result<Self, String> {
        let listener = AttachListener::bind(bundle).map_err(|e| format!("attach socket: {e}"))?;
        let ctl = match CtlFifo::make(bundle) {
            Ok(ctl) => ctl,
            Err(e) => {
                listener.remove();
                return Err(format!("ctl fifo: {e}"));
            }
        };
        let mut front = ConmonFront {
            listener: Some(listener),
            clients: HashMap::new(),
            tokens: ATTACH_CONNECTIONS,
            ctl: Some(ctl),
            signals: None,
            close_stdin_on_end,
            exec,
            exit_code: None,
        };
        if let Err(e) = front.register(registry) {
            front.remove_files();
            return Err(format!("set up the event loop: {e}"));
        }
        Ok(front)
    }

    fn register(&mut self, registry: &Registry) -> std::io::Result<()> {
        if let Some(listener) = &self.listener {
            let fd = listener.raw_fd();
            registry.register(&mut SourceFd(&fd), ATTACH_LISTENER, Interest::READABLE)?;
        }
        if let Some(ctl) = &self.ctl {
            let fd = ctl.raw_fd();
            registry.register(&mut SourceFd(&fd), CTL_FIFO, Interest::READABLE)?;
        }
        let mut mask = SigSet::empty();
        for signal in PASSED_ON {
            mask.add(signal);
        }
        // Blocked here, taken through the fd; every runtime child starts with none blocked.
        mask.thread_block().map_err(std::io::Error::from)?;
        let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
            .map_err(std::io::Error::from)?;
        let fd = signals.as_raw_fd();
        registry.register(&mut SourceFd(&fd), SIGNALS, Interest::READABLE)?;
        self.signals = Some(signals);
        Ok(())
    }

    /// The attach socket and the ctl fifo go.
    pub fn remove_files(&mut self) {
        if let Some(listener) = self.listener.take() {
            listener.remove();
        }
        if let Some(ctl) = self.ctl.take() {
            ctl.remove();
        }
    }
}

/// The door's part of the supervisor's loop.
pub const HOOKS: DoorHooks = DoorHooks {
    ready: front_ready,
    backlog: |_| {},
    tick: |_| {},
    output: attach_output,
    input_drained,
    exited,
};

fn front_mut(door: &mut Option<Box<dyn Door>>) -> Option<&mut ConmonFront> {
    let door: &mut dyn std::any::Any = door.as_deref_mut()?;
    door.downcast_mut()
}

/// The door the supervisor holds, seen as this one.
pub fn front_ref(door: &Option<Box<dyn Door>>) -> Option<&ConmonFront> {
    let door: &dyn std::any::Any = door.as_deref()?;
    door.downcast_ref()
}

fn front_ready(s: &mut Supervisor, token: Token) {
    match token {
        ATTACH_LISTENER => accept_clients(s),
        CTL_FIFO => on_ctl(s),
        SIGNALS => pass_signals_on(s),
        client => on_client(s, client),
    }
}

/// Every waiting connection joins the fan-out: podman connects before the container starts,
/// and the output of the turn it connects in is handed out after the events are.
fn accept_clients(s: &mut Supervisor) {
    let registry = s.poll.registry();
    let Some(front) = front_mut(&mut s.door) else {
        return;
    };
    let mut joined = Vec::new();
    while let Some(listener) = &front.listener {
        let client = match listener.accept() {
            Ok(Some(client)) => client,
            Ok(None) => break,
            Err(e) => {
                s.diag.warn(format_args!("attach socket: {e}"));
                break;
            }
        };
        let token = front.tokens.take();
        let fd = client.raw_fd();
        if registry
            .register(&mut SourceFd(&fd), token, Interest::READABLE)
            .is_ok()
        {
            front.clients.insert(token, client);
            joined.push(token);
        }
    }
    for token in joined {
        let count = s.attach_client(token);
        s.diag
            .info(format_args!("attach client joined ({count} attached)"));
    }
}

fn on_ctl(s: &mut Supervisor) {
    let Some(ctl) = front_mut(&mut s.door).and_then(|f| f.ctl.as_mut()) else {
        return;
    };
    for control in ctl.read() {
        match control {
            Ok(Control::Resize { rows, cols }) => {
                let _ = s.resize(&ProcessKey::Init, rows, cols);
            }
            Ok(Control::ReopenLog) => {
                if let Err(e) = s.copier.reopen_log() {
                    s.diag.warn(format_args!("reopen the log: {e}"));
                }
            }
            Err(message) => s.diag.warn(format_args!("{message}")),
        }
    }
}

fn pass_signals_on(s: &mut Supervisor) {
    let Some(front) = front_mut(&mut s.door) else {
        return;
    };
    let exec = front.exec;
    let Some(signals) = front.signals.as_mut() else {
        return;
    };
    let mut taken = Vec::new();
    while let Ok(Some(info)) = signals.read_signal() {
        taken.push(info.ssi_signo);
    }
    for signal in taken {
        s.diag
            .info(format_args!("signal {signal} passed on to the container"));
        match s.process(&ProcessKey::Init) {
            Ok(process) if exec && process.exit.is_none() && process.pid > 0 => {
                let _ = crate::common::sys::kill(process.pid, signal as i32);
            }
            _ => {
                let _ = s.kill(&ProcessKey::Init, signal, false);
            }
        }
    }
}

/// A client's socket is ready: what waits for it is sent, its input handed on until the
/// container's stdin is full (then the rest waits in the socket until the stdin drains).
fn on_client(s: &mut Supervisor, token: Token) {
    let Some(front) = front_mut(&mut s.door) else {
        return;
    };
    let close_stdin_on_end = front.close_stdin_on_end;
    let Some(client) = front.clients.get_mut(&token) else {
        return;
    };
    client.flush();
    loop {
        let read = match front_mut(&mut s.door).and_then(|f| f.clients.get_mut(&token)) {
            Some(client) => client.read(),
            None => return,
        };
        match read {
            Read::Input(bytes) => {
                if let Some(full) = s.client_frame(token, FrameKind::Stdin, &bytes) {
                    let clients = s.input_clients(&full);
                    read_clients(s, clients, false);
                    break;
                }
            }
            Read::Nothing => break,
            Read::End => {
                if close_stdin_on_end {
                    s.client_frame(token, FrameKind::StdinEof, &[]);
                }
                break;
            }
            Read::Gone => {
                drop_client(s, token);
                return;
            }
        }
    }
    let registry = s.poll.registry();
    let Some(client) = front_mut(&mut s.door).and_then(|f| f.clients.get_mut(&token)) else {
        return;
    };
    if client.finished() {
        drop_client(s, token);
        return;
    }
    let fd = client.raw_fd();
    let _ = registry.reregister(&mut SourceFd(&fd), token, client.interest());
}

/// A client is done with: it leaves the fan-out, its socket closes.
fn drop_client(s: &mut Supervisor, token: Token) {
    let registry = s.poll.registry();
    if let Some(client) = front_mut(&mut s.door).and_then(|f| f.clients.remove(&token)) {
        let fd = client.raw_fd();
        let _ = registry.deregister(&mut SourceFd(&fd));
    }
    s.client_left(token);
}

/// Reads (or stops reading) `clients`' input.
fn read_clients(s: &mut Supervisor, clients: Vec<Token>, on: bool) {
    let registry = s.poll.registry();
    let Some(front) = front_mut(&mut s.door) else {
        return;
    };
    for token in clients {
        if let Some(client) = front.clients.get_mut(&token) {
            client.reading = on;
            let fd = client.raw_fd();
            let _ = registry.reregister(&mut SourceFd(&fd), token, client.interest());
        }
    }
}

fn input_drained(s: &mut Supervisor) {
    let clients = s.clients_with_input_room();
    read_clients(s, clients, true);
}

/// The container's output, for every attached client.
fn attach_output(s: &mut Supervisor, stream: Stream, bytes: &[u8]) {
    for client in s.fan_out(stream, bytes) {
        drop_client(s, client);
    }
}

/// The init's exit is recorded (its output drained into the log): the monitor's work is done.
fn exited(s: &mut Supervisor, key: &ProcessKey, exit: Exit) {
    if !key.is_init() {
        return;
    }
    let timed_out = s.process(key).is_ok_and(|p| p.timed_out);
    if let Some(front) = front_mut(&mut s.door) {
        front.exit_code = Some(if timed_out { -1 } else { exit.code() });
    }
    s.done = true;
}

impl Door for ConmonFront {
    fn owns(&self, token: Token) -> bool {
        matches!(token, ATTACH_LISTENER | CTL_FIFO | SIGNALS) || self.clients.contains_key(&token)
    }

    fn has_backlog(&self) -> bool {
        false
    }

    fn next_deadline(&self) -> Option<Instant> {
        None
    }

    /// The last output goes to the clients (for a bounded time), their sockets close, the attach
    /// socket's file goes.
    fn unregister(mut self: Box<Self>) {
        let end = Instant::now() + LAST_OUTPUT_WAIT;
        for client in self.clients.values_mut() {
            client.flush_within(end.saturating_duration_since(Instant::now()));
        }
        self.clients.clear();
        self.remove_files();
    }
}

impl shim_io::copier::Frames for ConmonFront {
    fn queued(&self, client: Token) -> usize {
        self.clients.get(&client).map_or(0, AttachClient::queued)
    }

    fn send(&mut self, registry: &Registry, client: Token, stream: Stream, bytes: &[u8]) {
        let Some(attached) = self.clients.get_mut(&client) else {
            return;
        };
        let waited = attached.wants_write();
        attached.send(attach::stream_byte(stream), bytes);
        if waited != attached.wants_write() {
            let fd = attached.raw_fd();
            let interest = attached.interest();
            let _ = registry.reregister(&mut SourceFd(&fd), client, interest);
        }
    }

    /// A client too far behind gets no more output, as one whose write failed.
    fn cut_off(&mut self, _: &Registry, client: Token, _notice: &[u8]) {
        if let Some(attached) = self.clients.get_mut(&client) {
            attached.shut_output();
        }
    }
}
