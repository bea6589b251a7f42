//! The supervisor: one thread, one mio loop over the reaper's SIGCHLD, the stdio relays, the OOM
//! eventfd and the work its doors hand over. It alone owns the container, its processes and their
//! pipes, and it speaks only shim-core's words: [`ProcessKey`], [`Exit`], [`Event`],
//! [`shim_core::Error`]. What a door's wire says is the door's business (see [`crate::front`]).

mod cgroup;
pub mod diag;
mod logbinary;
pub mod mounts;
mod ops;
pub mod runtime;
mod spawn;
mod stdio;

pub use cgroup::Cgroup;
pub use spawn::CreateSpec;

use crate::oom::OomWatch;
use crate::tokens::{self, OOM, REAPER, WAKER};
use diag::Diag;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll};
use runtime::RuntimeOptions;
use shim_core::lifecycle::{self, Phase};
use shim_core::{Event, ExecId, Exit, ProcessKey, StdioPaths};
use shim_io::relay::{self, InputRelay, OutputRelay};
use shim_reaper::Reaper;
use shim_runc::Runc;
use std::collections::HashMap;
use std::fs::File;
use std::path::PathBuf;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};
use stdio::{Input, Output};

/// Work a door hands the supervisor's thread (a call to answer, with where its answer goes).
pub type Job = Box<dyn FnOnce(&mut Supervisor) + Send>;

/// Where a process's exit goes once it is recorded (a waiting client's answer).
pub type WaitAnswer = Box<dyn FnOnce(Exit) + Send>;

/// Where the supervisor's events go: a door's wire (containerd's task events).
pub trait EventSink: Send {
    fn publish(&mut self, container_id: &str, event: Event);
}

/// How often an exit whose output sits in a fifo looks whether the reader has taken it (a reader
/// emptying a fifo wakes nobody).
const DELIVERY_POLL: Duration = Duration::from_millis(5);
/// How often a fifo that holds the last of a finished output is looked at, to close it (the
/// reader's end-of-file) once read.
const LINGER_POLL: Duration = Duration::from_millis(250);

/// One relay of the shim.
#[derive(Debug)]
pub enum Relay {
    Output { relay: OutputRelay, name: String },
    Input(InputRelay),
}

/// The init or an exec.
pub struct Proc {
    pub key: ProcessKey,
    pub pid: i32,
    /// Created, Running or Paused; [`Proc::phase`] adds what the exit says.
    pub state: Phase,
    pub paths: StdioPaths,
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
    pub fn new(key: ProcessKey, paths: StdioPaths) -> Proc {
        Proc {
            key,
            pid: 0,
            state: Phase::Created,
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
    /// The runtime's `--root`.
    pub runc_root: std::path::PathBuf,
    pub created_at: String,
}

pub struct Supervisor {
    pub namespace: String,
    pub id: String,
    /// The bundle directory the shim runs in.
    pub bundle_dir: PathBuf,
    /// Where console sockets go (short paths: a bundle path can be too long for a socket).
    pub socket_dir: PathBuf,
    pub socket_stem: String,
    pub diag: Diag,
    pub events: Box<dyn EventSink>,
    pub poll: Poll,
    pub reaper: Reaper,
    jobs: Receiver<Job>,
    /// The options containerd gave `start`; a Create request's own take precedence.
    pub default_options: RuntimeOptions,
    pub container: Option<Container>,
    /// The container's entry in tether's state directory.
    pub front: Option<crate::front::control::TetherFront>,
    relays: HashMap<usize, Relay>,
    next_relay: usize,
    backlog: Vec<usize>,
    buf: Vec<u8>,
    pub reap_needed: bool,
    pub done: bool,
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
            diag: parts.diag,
            events: parts.events,
            poll: parts.poll,
            reaper: parts.reaper,
            jobs: parts.jobs,
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
                let token = event.token();
                match (token, tokens::relay_of(token)) {
                    (REAPER, _) => self.reap_needed = true,
                    (WAKER, _) => {}
                    (OOM, _) => self.check_oom(),
                    (_, Some(relay)) => self.relay_ready(relay),
                    (token, None) => {
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
            while let Ok(job) = self.jobs.try_recv() {
                job(self);
                if self.reap_needed {
                    self.reap();
                }
            }
            self.check_pending_exits();
            self.close_delivered();
            let expired = match &mut self.front {
                Some(front) => front.expire_idle(self.poll.registry()),
                None => Vec::new(),
            };
            for incoming in expired {
                self.on_tether_client(incoming);
            }
            self.refresh_front();
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
                Relay::Input(_) => None,
            })
            .chain(lingering);
        let front = self.front.as_ref().and_then(|front| front.next_deadline());
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

    /// Starts relaying an output; returns its number.
    pub fn add_output(
        &mut self,
        (fd, destination): Output,
        name: String,
        stream: &'static str,
    ) -> std::io::Result<usize> {
        let n = self.next_relay;
        self.next_relay += 1;
        let mut relay = OutputRelay::new(fd, destination, stream)?;
        let (source, destination) = tokens::relay_tokens(n);
        relay.register(self.poll.registry(), source, destination)?;
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
        let (source, destination) = tokens::relay_tokens(n);
        relay.register(self.poll.registry(), source, destination)?;
        self.relays.insert(n, Relay::Input(relay));
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
                if relay.closable() {
                    relay.close(self.poll.registry());
                    self.relays.remove(n);
                }
            }
        }
    }

    /// Ends a process's input (CloseIO).
    pub fn close_input(&mut self, n: usize) {
        if let Some(Relay::Input(relay)) = self.relays.get_mut(&n) {
            relay.close_after_flush(self.poll.registry(), &mut self.buf);
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
        self.reap_needed = true;
        let kill = shim_runc::KillOptions::new(9).all(true);
        if let Err(e) = runc.kill(
            &self.id,
            kill,
            &mut crate::daemon::ReaperWait(&mut self.reaper),
        ) {
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
        let registry = self.poll.registry();
        let mut delivered = true;
        for n in outputs {
            let Some(Relay::Output { relay, .. }) = self.relays.get_mut(n) else {
                continue; // finished and closed
            };
            if relay.source_open() && now >= grace_over {
                let _ = relay.pump(registry, &mut self.buf);
                relay.close_source(registry);
            }
            delivered &= relay.delivered(now, exited);
            if relay.closable() {
                relay.close(registry);
                self.relays.remove(n);
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
            if let Some(front) = &mut self.front {
                front.exited(self.poll.registry(), exit.code());
            }
        }
        self.diag.debug(format_args!(
            "{key} (pid {}) exited: {}",
            exit.pid, exit.status
        ));
    }
}

fn pending_exit(exit: Exit, key: &ProcessKey) -> PendingExit {
    let grace = lifecycle::output_grace(key);
    let exited = Instant::now();
    PendingExit {
        exit,
        exited,
        // Saturating: an Instant this far ahead cannot overflow in practice, but never panic.
        grace_over: exited.checked_add(grace).unwrap_or(exited),
    }
}
