//! The supervisor: one thread, one mio loop over the reaper's SIGCHLD, the stdio relays, the OOM
//! eventfd and the work its doors hand over. It alone owns the container, its processes and their
//! pipes, and it speaks only shim-core's words: [`ProcessKey`], [`Exit`], [`Event`],
//! [`shim_core::Error`]. What a door's wire says is the door's business: the doors live in
//! `front/`, and one served on this thread registers with the supervisor ([`door`]).

mod attach;
pub mod diag;
pub mod door;
mod exec_process;
mod execs;
pub mod gateway;
mod logbinary;
pub mod mounts;
pub mod network;
pub mod oom;
mod ops;
pub mod persist;
pub mod record;
mod removal;
pub mod runtime;
mod sessions;
mod spawn;
mod stdio;
pub mod tokens;

pub use crate::common::cgroup::Cgroup;
pub use spawn::{CreateSpec, Listing, RunHow, RunSpec};
pub use stdio::StdioPlan;

use diag::Diag;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll};
use oom::OomWatch;
use runtime::RuntimeOptions;
use shim_core::frame::FrameKind;
use shim_core::lifecycle::{self, Phase};
use shim_core::{Event, ExecId, Exit, ProcessKey};
use shim_io::copier::{Copier, Frames, Notice};
use shim_io::Stream;
use shim_reaper::Reaper;
use shim_runc::Runc;
use std::collections::HashMap;
use std::fs::File;
use std::path::PathBuf;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};
use tokens::{OOM, REAPER, WAKER};

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

/// How long the daemon is quiet (no event, no call) before it gives back the memory a burst of
/// output or an exec grew: a bounded, timed release, one trim per quiet spell.
pub const QUIET_RELEASE: Duration = Duration::from_secs(2);

/// No one listens for events (`tether run`'s containers are seen through their state).
#[derive(Debug)]
pub struct NoEvents;

impl EventSink for NoEvents {
    fn publish(&mut self, _: &str, _: Event) {}
}

/// How often an exit whose output sits in a fifo looks whether the reader has taken it (a reader
/// emptying a fifo wakes nobody).
const DELIVERY_POLL: Duration = Duration::from_millis(5);
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
    /// When it is killed for running past its time, and that time.
    pub deadline: Option<(Instant, Duration)>,
    /// It was killed for running past its time.
    pub timed_out: bool,
    /// An exec removed once its exit is recorded and told ([`Supervisor::remove_exec_at_exit`]).
    pub remove_at_exit: bool,
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
            deadline: None,
            timed_out: false,
            remove_at_exit: false,
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

    /// Its copies: the outputs, then the input.
    pub fn relays(&self) -> impl Iterator<Item = usize> + '_ {
        self.outputs.iter().copied().chain(self.input)
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
    pub cgroup: Option<Cgroup>,
    pub created_at: String,
    /// What `tether ps` shows of it.
    pub listing: Listing,
    /// Where its network (`run --network bridge`) is recorded, while it is attached.
    pub network: Option<std::path::PathBuf>,
}

impl Container {
    /// Its processes: the init, then the execs.
    pub fn procs(&self) -> impl Iterator<Item = &Proc> {
        std::iter::once(&self.init).chain(self.execs.values())
    }
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
    /// The door served on this thread (tether's control socket), and where to call it.
    pub door: Option<Box<dyn door::Door>>,
    door_hooks: Option<door::DoorHooks>,
    /// Called once a container is created (containerd's Create): a launcher's way to open a
    /// door for it.
    pub on_created: Option<fn(&mut Supervisor)>,
    /// The container's entry in tether's state directory.
    pub record: Option<record::Record>,
    /// `run --rm`: remove the container at its exit.
    removal: Option<removal::RemoveAtExit>,
    /// Execs removed at their exit, with their codes.
    finished_execs: execs::Finished,
    /// Execs started for a door's clients.
    sessions: sessions::Sessions,
    /// The init's output for attached clients.
    attached: shim_io::client::Fanout,
    /// The output is tapped for the door even with no client attached.
    tap_always: bool,
    /// Every copy of the processes' stdio, tether's log among them.
    pub copier: Copier,
    /// The reaper's signalfd was readable. (Exits reaped while a runtime command was waited for
    /// are the reaper's own to tell: [`Supervisor::reap_due`].)
    reap_needed: bool,
    pub done: bool,
    /// When to give the kernel back the heap pages start-up freed: soon after the start, not
    /// during it, so the trim (a millisecond of CPU) is not on the path to the container's first
    /// output or its caller's answer.
    pub trim_at: Option<Instant>,
    /// When to look whether the daemon has been quiet long enough to give back what work grew
    /// (see [`QUIET_RELEASE`]).
    release_at: Option<Instant>,
    /// The last turn that had something to do (events, calls): the quiet is counted from it.
    last_work: Instant,
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
            door: None,
            door_hooks: None,
            on_created: None,
            record: None,
            removal: None,
            finished_execs: execs::Finished::new(),
            sessions: sessions::Sessions::default(),
            attached: shim_io::client::Fanout::default(),
            tap_always: false,
            copier: Copier::new(tokens::relay_tokens),
            reap_needed: false,
            done: false,
            trim_at: None,
            release_at: None,
            last_work: Instant::now(),
            scratch_serial: 0,
        }
    }

    /// Serves until the container is gone (Shutdown, or a delete through tether's door).
    pub fn run(&mut self) {
        let mut events = Events::with_capacity(64);
        while !self.done {
            let busy = self.copier.has_backlog()
                || self.reap_due()
                || self.door.as_ref().is_some_and(|d| d.has_backlog());
            let timeout = if busy {
                Some(Duration::ZERO)
            } else {
                self.next_deadline()
                    .map(|at| at.saturating_duration_since(Instant::now()))
            };
            let before = Instant::now();
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
                    (_, Some(n)) => {
                        // A pipe whose writer closed is most often a process that exited: reap
                        // in this turn, rather than sleep and wake again for its SIGCHLD (a
                        // process not gone yet is reaped at its SIGCHLD as ever).
                        self.reap_needed |= event.is_read_closed();
                        self.copier
                            .ready(self.poll.registry(), n, frames(&mut self.door))
                    }
                    (token, None) => {
                        if let Some(hooks) = self.hooks() {
                            (hooks.ready)(self, token);
                        }
                    }
                }
            }
            self.copy_waiting_output();
            if let Some(hooks) = self.hooks() {
                (hooks.backlog)(self);
            }
            if self.reap_due() {
                self.reap();
            }
            while let Ok(job) = self.jobs.try_recv() {
                job(self);
                if self.reap_due() {
                    self.reap();
                }
            }
            let registry = self.poll.registry();
            self.copier.resume_clients(registry, frames(&mut self.door));
            self.check_pending_exits();
            self.kill_overdue();
            // After the exits this turn recorded: a `--rm` container is removed in the turn its
            // exit is recorded, not at a later event that may never come.
            self.remove_if_exited();
            if let Some(hooks) = self.hooks() {
                (hooks.tick)(self);
            }
            self.copier.close_delivered(self.poll.registry());
            self.act_on_notices();
            self.refresh_record();
            if self.trim_at.is_some_and(|at| at <= Instant::now()) {
                self.trim_at = None;
                // What start-up made, the read buffer of the first (empty) reads among it.
                self.copier.release_memory();
                crate::common::sys::release_free_memory();
            }
            if !events.is_empty() {
                self.worked(before);
            }
            self.release_when_quiet();
        }
    }

    /// Work came (at `at`): memory it grew is given back once the daemon has been quiet for
    /// [`QUIET_RELEASE`].
    fn worked(&mut self, at: Instant) {
        self.last_work = at;
        if self.release_at.is_none() {
            self.release_at = at.checked_add(QUIET_RELEASE);
        }
    }

    /// At its time: once quiet, the copier's burst buffers and the heap's free pages go back to
    /// the kernel (taken again only when output comes); still busy, it waits for the quiet.
    fn release_when_quiet(&mut self) {
        let now = Instant::now();
        if self.release_at.is_none_or(|at| at > now) {
            return;
        }
        let quiet_since = self.last_work.checked_add(QUIET_RELEASE);
        if quiet_since.is_some_and(|quiet| quiet > now) {
            self.release_at = quiet_since;
            return;
        }
        self.release_at = None;
        self.copier.release_memory();
        crate::common::sys::release_free_memory();
    }

    /// Copies what waits without an event to say so (new copies, budgets run out).
    pub fn copy_waiting_output(&mut self) {
        let registry = self.poll.registry();
        self.copier.work_backlog(registry, frames(&mut self.door));
        self.act_on_notices();
    }

    /// Does what the copier asks: diagnostics, tapped output for attach clients, clients to read
    /// again. Called after every copier call that may produce output for the door, so what a
    /// process wrote reaches its clients before its exit does.
    fn act_on_notices(&mut self) {
        loop {
            let notices = self.copier.take_notices();
            if notices.is_empty() {
                return;
            }
            let mut input_taken = false;
            for notice in notices {
                match notice {
                    Notice::Warn(message) => self.diag.warn(format_args!("{message}")),
                    Notice::Debug(message) => self.diag.debug(format_args!("{message}")),
                    Notice::Tapped { stream, bytes } => {
                        if let Some(hooks) = self.hooks() {
                            (hooks.output)(self, stream, &bytes);
                        }
                    }
                    Notice::InputTaken => input_taken = true,
                }
            }
            if let Some(hooks) = self.hooks().filter(|_| input_taken) {
                (hooks.input_drained)(self);
            }
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let relays = self.copier.next_deadline().into_iter();
        let front = self
            .door
            .as_ref()
            .and_then(|door| door.next_deadline())
            .into_iter()
            .chain(self.record.as_ref().and_then(record::Record::next_deadline))
            .chain(self.removal_deadline())
            .chain(self.trim_at)
            .chain(self.release_at)
            .min();
        let Some(container) = self.container.as_ref() else {
            return relays.chain(front).min();
        };
        let exits = container
            .procs()
            .filter_map(|p| p.pending_exit.map(|pending| pending.grace_over));
        let deadlines = container
            .procs()
            .filter(|p| p.exit.is_none())
            .filter_map(|p| p.deadline.map(|(at, _)| at));
        // An exit whose pipes are closed waits for its reader, who wakes nobody: look again soon.
        let delivering = container.procs().any(|p| {
            p.pending_exit.is_some() && !p.outputs.iter().any(|n| self.copier.is_open(*n))
        });
        let poll_again = delivering.then(|| Instant::now() + DELIVERY_POLL);
        exits
            .chain(deadlines)
            .chain(relays)
            .chain(poll_again)
            .chain(front)
            .min()
    }

    /// Closes a copy at once (its process is gone and deleted).
    pub fn close_relay(&mut self, n: usize) {
        self.copier.close(self.poll.registry(), n);
        self.act_on_notices();
    }

    /// Stops reading a process's output whatever is still open, keeping what was read for the client.
    fn close_sources(&mut self, outputs: &[usize]) {
        let registry = self.poll.registry();
        self.copier
            .close_sources(registry, outputs, frames(&mut self.door));
        self.act_on_notices();
    }

    /// Watches the container's cgroup for OOM kills (see [`Supervisor::check_oom`]).
    fn register_oom(&mut self, cgroup: Option<&Cgroup>) -> Option<OomWatch> {
        let watch = OomWatch::new(cgroup?)
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
        let id = self.id.clone();
        if let Err(e) = self.runtime_raw(|wait| runc.kill(&id, kill, wait)) {
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

    /// Where a reaped process's output is (see [`Copier::delivered`]).
    fn output_state(
        &mut self,
        outputs: &[usize],
        pending: PendingExit,
        now: Instant,
    ) -> lifecycle::Output {
        let grace_over = now >= pending.grace_over;
        let registry = self.poll.registry();
        let delivered = self.copier.delivered(
            registry,
            outputs,
            pending.exited,
            grace_over,
            frames(&mut self.door),
        );
        self.act_on_notices();
        lifecycle::Output {
            delivered,
            grace_over,
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
            self.refresh_record();
        }
        if let Some(hooks) = self.hooks() {
            (hooks.exited)(self, key, exit);
        }
        self.remove_finished_exec(key);
        self.diag.debug(format_args!(
            "{key} (pid {}) exited: {}",
            exit.pid, exit.status
        ));
        if key.is_init() {
            // Its address and published ports are free for the next container (as docker frees
            // them at a stop); after the exit went out, which this does not hold up.
            self.release_network();
        }
    }

    /// Detaches the container's network, if it has one attached.
    pub(crate) fn release_network(&mut self) {
        let Some(record) = self.container.as_ref().and_then(|c| c.network.clone()) else {
            return;
        };
        match self.runtime_raw(|wait| network::detach(&record, wait)) {
            Ok(()) => {
                if let Some(container) = &mut self.container {
                    container.network = None;
                }
            }
            // Kept for the delete to try again.
            Err(e) => self.diag.warn(format_args!("{e}")),
        }
    }
}

/// The door whose clients get frames, if there is one.
fn frames(door: &mut Option<Box<dyn door::Door>>) -> Option<&mut dyn Frames> {
    door.as_deref_mut().map(|door| door as &mut dyn Frames)
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
