//! The shim daemon's core: one thread, one mio loop over the reaper's SIGCHLD, the stdio relays,
//! the OOM eventfd and the calls the ttrpc threads hand over. It alone owns the container, its
//! processes and their pipes.

use super::diag::Diag;
use super::events::{timestamp, Event, Publisher};
use super::oom::OomWatch;
use super::options::RuntimeOptions;
use super::relay::{InputRelay, OutputRelay};
use super::service::{Answer, Call};
use super::stdio::{Input, Output, StdioPaths};
use containerd_shim_protos::api::{Status, WaitResponse};
use containerd_shim_protos::events::task as ev;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use shim_reaper::{Exit, Reaper};
use shim_runc::Runc;
use std::collections::HashMap;
use std::fs::File;
use std::path::PathBuf;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant, SystemTime};

pub const REAPER: Token = Token(0);
// Token(1) is tether's control socket listener; its connections use 1000..2^40.
pub const WAKER: Token = Token(2);
const OOM: Token = Token(3);
/// Relay `n` uses tokens `RELAYS + 2n` (its source) and `RELAYS + 2n + 1` (its destination).
const RELAYS: usize = 1 << 41;

/// How long the init's exit waits for output pipes an orphan outside the container keeps open.
const INIT_OUTPUT_GRACE: Duration = Duration::from_secs(2);
/// The same for an exec (its background children may hold them for ever).
const EXEC_OUTPUT_GRACE: Duration = Duration::from_millis(250);

/// One relay of the shim.
#[derive(Debug)]
pub enum Relay {
    Output { relay: OutputRelay, name: String },
    Input(InputRelay),
}

/// The init or an exec.
#[derive(Debug)]
pub struct Proc {
    /// "" for the init.
    pub exec_id: String,
    pub pid: i32,
    pub status: Status,
    pub paths: StdioPaths,
    /// Its output relays.
    pub outputs: Vec<usize>,
    pub input: Option<usize>,
    pub terminal: Option<File>,
    pub exit: Option<(u32, SystemTime)>,
    pub pending_exit: Option<(Exit, Instant)>,
    pub waiters: Vec<Answer<WaitResponse>>,
    /// An exec's process, until it is started.
    pub spec: Option<oci_spec::runtime::Process>,
}

impl Proc {
    pub fn new(exec_id: &str, paths: StdioPaths) -> Proc {
        Proc {
            exec_id: exec_id.to_owned(),
            pid: 0,
            status: Status::CREATED,
            paths,
            outputs: Vec::new(),
            input: None,
            terminal: None,
            exit: None,
            pending_exit: None,
            waiters: Vec::new(),
            spec: None,
        }
    }

    pub fn is_running(&self) -> bool {
        matches!(self.status, Status::RUNNING | Status::PAUSED) && self.exit.is_none()
    }

    pub fn wait_response(&self) -> WaitResponse {
        let mut response = WaitResponse::new();
        if let Some((code, at)) = self.exit {
            response.exit_status = code;
            response.exited_at = Some(timestamp(at)).into();
        }
        response
    }
}

/// The container, from Create to Delete.
#[derive(Debug)]
pub struct Container {
    pub bundle: String,
    pub rootfs_mounted: bool,
    pub runc: Runc,
    pub options: RuntimeOptions,
    pub init: Proc,
    pub execs: HashMap<String, Proc>,
    pub oom: Option<OomWatch>,
    /// The runtime's `--root`.
    pub runc_root: std::path::PathBuf,
    pub created_at: String,
}

pub struct Core {
    pub namespace: String,
    pub id: String,
    /// The bundle directory the shim runs in.
    pub bundle_dir: PathBuf,
    /// Where console sockets go (short paths: a bundle path can be too long for a socket).
    pub socket_dir: PathBuf,
    pub socket_stem: String,
    pub diag: Diag,
    pub events: Publisher,
    pub poll: Poll,
    pub reaper: Reaper,
    calls: Receiver<Call>,
    /// The options containerd gave `start`; a Create request's own take precedence.
    pub default_options: RuntimeOptions,
    pub container: Option<Container>,
    /// The container's entry in tether's state directory.
    pub front: Option<super::front::TetherFront>,
    relays: HashMap<usize, Relay>,
    next_relay: usize,
    backlog: Vec<usize>,
    buf: Vec<u8>,
    pub reap_needed: bool,
    pub done: bool,
    /// Numbers the per-process scratch names (console sockets, exec pid files).
    pub scratch_serial: u64,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core").field("id", &self.id).finish()
    }
}

/// What the core is made from.
#[derive(Debug)]
pub struct CoreParts {
    pub namespace: String,
    pub id: String,
    pub bundle_dir: PathBuf,
    pub socket_dir: PathBuf,
    pub socket_stem: String,
    pub diag: Diag,
    pub events: Publisher,
    pub poll: Poll,
    pub reaper: Reaper,
    pub calls: Receiver<Call>,
    pub default_options: RuntimeOptions,
}

impl Core {
    pub fn new(parts: CoreParts) -> Core {
        Core {
            namespace: parts.namespace,
            id: parts.id,
            bundle_dir: parts.bundle_dir,
            socket_dir: parts.socket_dir,
            socket_stem: parts.socket_stem,
            diag: parts.diag,
            events: parts.events,
            poll: parts.poll,
            reaper: parts.reaper,
            calls: parts.calls,
            default_options: parts.default_options,
            container: None,
            front: None,
            relays: HashMap::new(),
            next_relay: 0,
            backlog: Vec::new(),
            buf: vec![0; 64 * 1024],
            reap_needed: false,
            done: false,
            scratch_serial: 0,
        }
    }

    /// Serves until Shutdown.
    pub fn run(&mut self) {
        let mut events = Events::with_capacity(64);
        while !self.done {
            let timeout = if !self.backlog.is_empty() || self.reap_needed {
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
                match event.token() {
                    REAPER => self.reap_needed = true,
                    WAKER => {}
                    OOM => self.check_oom(),
                    Token(t) if t >= RELAYS => self.relay_ready((t - RELAYS) / 2),
                    token => {
                        let registry = self.poll.registry();
                        let incoming = match &mut self.front {
                            Some(front) if front.owns(token) => front.handle(registry, token),
                            _ => Vec::new(),
                        };
                        for incoming in incoming {
                            self.on_tether_client(incoming);
                        }
                    }
                }
            }
            for relay in std::mem::take(&mut self.backlog) {
                self.relay_ready(relay);
            }
            if self.reap_needed {
                self.reap();
            }
            while let Ok(call) = self.calls.try_recv() {
                self.handle(call);
                if self.reap_needed {
                    self.reap();
                }
            }
            self.check_pending_exits();
            self.refresh_front();
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let container = self.container.as_ref()?;
        std::iter::once(&container.init)
            .chain(container.execs.values())
            .filter_map(|p| p.pending_exit.map(|(_, at)| at))
            .min()
    }

    /// Starts relaying an output; returns its number.
    pub fn add_output(
        &mut self,
        (fd, destination): Output,
        name: String,
    ) -> std::io::Result<usize> {
        let n = self.next_relay;
        self.next_relay += 1;
        let mut relay = OutputRelay::new(fd, destination)?;
        relay.register(
            self.poll.registry(),
            Token(RELAYS + 2 * n),
            Token(RELAYS + 2 * n + 1),
        )?;
        self.relays.insert(n, Relay::Output { relay, name });
        // Output may be waiting already.
        self.backlog.push(n);
        Ok(n)
    }

    /// Starts relaying an input; returns its number.
    pub fn add_input(&mut self, (fifo, writer): Input) -> std::io::Result<usize> {
        let n = self.next_relay;
        self.next_relay += 1;
        let mut relay = InputRelay::new(fifo, writer)?;
        relay.register(
            self.poll.registry(),
            Token(RELAYS + 2 * n),
            Token(RELAYS + 2 * n + 1),
        )?;
        self.relays.insert(n, Relay::Input(relay));
        self.backlog.push(n);
        Ok(n)
    }

    fn relay_ready(&mut self, n: usize) {
        let registry = self.poll.registry();
        match self.relays.get_mut(&n) {
            Some(Relay::Output { relay, name }) => {
                let flushed = relay.flush();
                let turn = relay.pump(registry, &mut self.buf);
                for error in [flushed.error, turn.error].into_iter().flatten() {
                    self.diag
                        .warn(format_args!("{name}: {error} (output is dropped)"));
                }
                if turn.dropped > 0 {
                    self.diag.warn(format_args!(
                        "{name}: nobody reads it and {} MiB are held; output is dropped until it is read (total dropped {} bytes)",
                        super::relay::PENDING_LIMIT >> 20,
                        relay.dropped()
                    ));
                }
                if turn.more {
                    self.backlog.push(n);
                } else if relay.finished() {
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
            None => {}
        }
    }

    /// Whether an output relay still reads from its process.
    fn output_open(&self, n: usize) -> bool {
        matches!(self.relays.get(&n), Some(Relay::Output { relay, .. }) if relay.source_open())
    }

    /// Closes a relay at once (its process is gone and deleted).
    pub fn close_relay(&mut self, n: usize) {
        match self.relays.remove(&n) {
            Some(Relay::Output { mut relay, .. }) => relay.close(self.poll.registry()),
            Some(Relay::Input(mut relay)) => relay.close(self.poll.registry()),
            None => {}
        }
    }

    /// Stops reading a process's output whatever is still open, keeping what was read for the client.
    fn close_sources(&mut self, outputs: &[usize]) {
        for n in outputs {
            if let Some(Relay::Output { relay, .. }) = self.relays.get_mut(n) {
                let _ = relay.pump(self.poll.registry(), &mut self.buf);
                relay.close_source(self.poll.registry());
                if relay.finished() {
                    relay.close(self.poll.registry());
                    self.relays.remove(n);
                }
            }
        }
    }

    /// Ends a process's input (CloseIO).
    pub fn close_input(&mut self, n: usize) {
        if let Some(Relay::Input(relay)) = self.relays.get_mut(&n) {
            relay.close_after_flush(self.poll.registry());
            if relay.is_closed() {
                self.relays.remove(&n);
            }
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
            self.diag
                .info(format_args!("container {} ran out of memory", self.id));
            self.events.publish(Event::Oom(ev::TaskOOM {
                container_id: self.id.clone(),
                ..Default::default()
            }));
        }
    }

    /// Starts watching a new process's pid; its exit, if it came already (reaped while the runtime
    /// was waited for), is returned as pending.
    pub fn watch(&mut self, pid: i32, init: bool) -> Option<(Exit, Instant)> {
        let grace = if init {
            INIT_OUTPUT_GRACE
        } else {
            EXEC_OUTPUT_GRACE
        };
        self.reaper
            .watch(pid)
            .map(|exit| (exit, Instant::now() + grace))
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
        for exit in exits {
            let now = Instant::now();
            let proc = if container.init.pid == exit.pid {
                Some((&mut container.init, INIT_OUTPUT_GRACE))
            } else {
                container
                    .execs
                    .values_mut()
                    .find(|p| p.pid == exit.pid)
                    .map(|p| (p, EXEC_OUTPUT_GRACE))
            };
            if let Some((proc, grace)) = proc {
                if proc.exit.is_none() && proc.pending_exit.is_none() {
                    proc.pending_exit = Some((exit, now + grace));
                }
            }
        }
        self.check_pending_exits();
    }

    /// Records the exits whose output is complete, or whose grace period is over. Exec exits come
    /// first: the init's waits for every exec's.
    pub fn check_pending_exits(&mut self) {
        let Some(container) = &self.container else {
            return;
        };
        let now = Instant::now();
        let mut ready: Vec<String> = Vec::new();
        for proc in container.execs.values() {
            if let Some((_, deadline)) = proc.pending_exit {
                let open = proc.outputs.iter().any(|n| self.output_open(*n));
                if !open || now >= deadline {
                    ready.push(proc.exec_id.clone());
                }
            }
        }
        for exec_id in ready {
            self.record_exit(&exec_id);
        }
        let Some(container) = &self.container else {
            return;
        };
        if let Some((_, deadline)) = container.init.pending_exit {
            let open = container.init.outputs.iter().any(|n| self.output_open(*n));
            let execs_running = container
                .execs
                .values()
                .any(|p| p.exit.is_none() && p.status == Status::RUNNING);
            if (!open && !execs_running) || now >= deadline {
                self.record_exit("");
            }
        }
    }

    pub(super) fn record_exit(&mut self, exec_id: &str) {
        if exec_id.is_empty() {
            // An OOM kill is reported before the exit it caused.
            self.check_oom();
        }
        let Some(container) = &mut self.container else {
            return;
        };
        let proc = if exec_id.is_empty() {
            &mut container.init
        } else {
            match container.execs.get_mut(exec_id) {
                Some(proc) => proc,
                None => return,
            }
        };
        let Some((exit, _)) = proc.pending_exit.take() else {
            return;
        };
        let code = exit.status.code() as u32;
        proc.exit = Some((code, exit.reaped_at));
        proc.status = Status::STOPPED;
        let outputs = proc.outputs.clone();
        let response = proc.wait_response();
        for waiter in proc.waiters.drain(..) {
            let _ = waiter.send(Ok(response.clone()));
        }
        let event = ev::TaskExit {
            container_id: self.id.clone(),
            id: if exec_id.is_empty() {
                self.id.clone()
            } else {
                exec_id.to_owned()
            },
            pid: exit.pid as u32,
            exit_status: code,
            exited_at: Some(timestamp(exit.reaped_at)).into(),
            ..Default::default()
        };
        self.close_sources(&outputs);
        self.events.publish(Event::Exit(event));
        if exec_id.is_empty() {
            self.refresh_front();
            if let Some(front) = &mut self.front {
                front.exited(self.poll.registry(), code as i32);
            }
        }
        let what = if exec_id.is_empty() {
            "init".to_owned()
        } else {
            format!("exec {exec_id}")
        };
        self.diag.debug(format_args!(
            "{what} (pid {}) exited: {}",
            exit.pid, exit.status
        ));
    }
}
