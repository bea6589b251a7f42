//! The shim daemon: one per container, one thread, one mio event loop over the reaper's SIGCHLD, the
//! container's output pipes and the control socket.
//!
//! Life: `tether run` starts `tether daemon --config JSON` with stdout on a pipe. The daemon leaves the
//! caller's session, becomes a subreaper, creates and starts the container (see [`startup`]), writes
//! a one-line start report on that pipe, and from then on serves until `delete`.
//!
//! When the container's init exits, the exit is recorded only after its output pipes reached EOF
//! (everything is in the log), or after the init's output grace
//! ([`shim_core::lifecycle::output_grace`]) if an orphan outside the container's PID
//! namespace still holds a pipe open.

mod attach;
pub(crate) mod control;
mod exec;
pub(crate) mod nonblocking;
pub(crate) mod process;
pub(crate) mod record;
mod requests;
pub(crate) mod startup;

use crate::config::{DaemonConfig, StartReport};
use crate::oom::OomWatch;
use crate::tokens::{self, Tokens, CONTAINER_STDIN, OOM, REAPER, STDERR, STDOUT};
use control::{ControlServer, Incoming};
use exec::ExecTable;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use record::{write_atomically, ShimLog};
use shim_core::lifecycle;
use shim_core::protocol::{Reply, Response};
use shim_core::{ContainerState, ExitRecord, ProcessKey, StateLayout, Status};
use shim_core::{Exit, ExitStatus};
use shim_io::{IoEngine, IoEvent, SinkId, Stream};
use shim_reaper::Reaper;
use shim_runc::{DeleteOptions, ExitWaiter, Runc};
use std::time::{Duration, Instant};

/// The longest a runtime command may take before the daemon gives up on it.
const RUNTIME_TIMEOUT: Duration = Duration::from_secs(60);

/// Runtime commands wait for their exit through the reaper, the one owner of `waitpid`.
pub struct ReaperWait<'a>(pub &'a mut Reaper);

impl ExitWaiter for ReaperWait<'_> {
    fn wait(&mut self, pid: i32) -> std::io::Result<ExitStatus> {
        let exit = self
            .0
            .wait_for(pid, RUNTIME_TIMEOUT)
            .map_err(std::io::Error::other)?;
        Ok(exit.status)
    }

    fn wakeup_fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        Some(self.0.signal_fd())
    }

    fn service(&mut self) {
        let _ = self.0.collect();
    }

    fn wait_timeout(&mut self, pid: i32, timeout: Duration) -> std::io::Result<Option<ExitStatus>> {
        match self.0.wait_for(pid, timeout) {
            Ok(exit) => Ok(Some(exit.status)),
            Err(shim_reaper::Error::Timeout { .. }) => Ok(None),
            Err(e) => Err(std::io::Error::other(e)),
        }
    }
}

/// Entry point of `tether daemon`; returns the process exit code.
pub fn main(config_json: &str) -> u8 {
    close_inherited_fds();
    let report_failure = |message: String| {
        report(&StartReport::Failed { message });
        1
    };
    let config: DaemonConfig = match serde_json::from_str(config_json) {
        Ok(config) => config,
        Err(e) => return report_failure(format!("daemon configuration: {e}")),
    };
    let layout = StateLayout::new(&config.state_dir);
    let mut log = ShimLog::open(&layout.shim_log(&config.id));
    match Daemon::start(config, layout, &mut log) {
        Ok(mut daemon) => {
            daemon.serve(&mut log);
            0
        }
        Err((layout, id, message)) => {
            log.line(format_args!("start failed: {message}"));
            let _ = std::fs::remove_dir_all(layout.container_dir(&id));
            report_failure(message)
        }
    }
}

/// Closes every fd above stdio that `tether run`'s own caller may have left open without
/// O_CLOEXEC: the daemon lives for the container's whole life and must not keep, say, the read end
/// of a pipe its caller's caller waits on.
fn close_inherited_fds() {
    shim_runc::close_fds_from(3);
}

/// Writes the start report to stdout (the pipe `tether run` reads), then points stdout at /dev/null
/// so nothing later can fail because `tether run` has gone.
fn report(report: &StartReport) {
    use std::io::Write;
    let mut line = serde_json::to_vec(report).expect("report serializes");
    line.push(b'\n');
    let _ = std::io::stdout().write_all(&line);
    let _ = std::io::stdout().flush();
    if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
        let _ = nix::unistd::dup2(std::os::fd::AsRawFd::as_raw_fd(&null), 1);
    }
}

/// Start-up (argument parsing, the runtime calls) leaves freed heap pages behind that are still
/// resident; the daemon lives for the container's whole life, so give them back once.
fn release_startup_memory() {
    crate::sys::release_free_memory();
}

struct PendingExit {
    exit: Exit,
    deadline: Instant,
}

struct Daemon {
    config: DaemonConfig,
    layout: StateLayout,
    runc: Runc,
    poll: Poll,
    reaper: Reaper,
    engine: IoEngine,
    sink: SinkId,
    control: ControlServer,
    state: ContainerState,
    pending_exit: Option<PendingExit>,
    waiters: Vec<Token>,
    /// A blocking runtime call may have reaped exits the signalfd will not announce again.
    reap_needed: bool,
    done: bool,
    /// The container's own process (from config.json): what an exec starts from. Read at the
    /// first exec, not at start-up: parsing a whole runtime spec takes tens of KiB of stack, which
    /// stay resident for the daemon's life, and most containers are never exec'd into.
    base_process: Option<oci_spec::runtime::Process>,
    execs: ExecTable,
    /// Tokens for exec pipes.
    exec_tokens: Tokens,
    /// Client input that arrived while handling something else.
    deferred_incoming: Vec<Incoming>,
    /// The container's stdin (pipe or terminal), with `run -i` or `-t`.
    input: Option<attach::ContainerInput>,
    /// An attach client ended stdin: close the pipe once its input is written.
    input_eof: bool,
    /// The container's terminal, with `run -t`.
    terminal: Option<std::fs::File>,
    /// Attach clients.
    attached: Vec<Token>,
    /// Files not written yet (a full state dir).
    unsaved: Unsaved,
    /// OOM kills in the container's memory cgroup (none without a v1 memory controller).
    oom: Option<OomWatch>,
}

/// What of the daemon's record is not on disk yet.
#[derive(Debug, Default)]
struct Unsaved {
    exit: bool,
    state: bool,
    /// When to try again after a failed write.
    retry_at: Option<Instant>,
}

/// How often a record that could not be written is tried again.
const PERSIST_RETRY: Duration = Duration::from_secs(1);

type StartError = (StateLayout, shim_core::ContainerId, String);

impl Daemon {
    fn start(
        config: DaemonConfig,
        layout: StateLayout,
        log: &mut ShimLog,
    ) -> Result<Daemon, StartError> {
        let fail = |layout: &StateLayout, config: &DaemonConfig, message: String| {
            (layout.clone(), config.id.clone(), message)
        };
        // Leave the caller's session and terminal: the caller may exit, or its terminal close.
        if let Err(e) = nix::unistd::setsid() {
            return Err(fail(&layout, &config, format!("setsid: {e}")));
        }
        // Our own diagnostics, including a panic message, go to shim.log.
        if let Ok(file) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(layout.shim_log(&config.id))
        {
            let _ = nix::unistd::dup2(std::os::fd::AsRawFd::as_raw_fd(&file), 2);
        }
        let _ = std::fs::write(
            layout.daemon_pid_file(&config.id),
            format!("{}\n", std::process::id()),
        );
        shim_reaper::set_child_subreaper().map_err(|e| fail(&layout, &config, e.to_string()))?;
        let mut reaper = Reaper::new().map_err(|e| fail(&layout, &config, e.to_string()))?;
        let mut runc = Runc::new(&config.runtime)
            .timeout(Duration::from_secs(config.runtime_timeout_secs))
            .log(layout.runtime_log(&config.id))
            .scratch_dir(layout.container_dir(&config.id));
        if let Some(root) = &config.runtime_root {
            runc = runc.root(root);
        }
        let started = startup::start_container(&config, &layout, &runc, &mut reaper)
            .map_err(|message| fail(&layout, &config, message))?;
        let init_pid = started.init_pid;
        log.line(format_args!(
            "container {} started, init pid {init_pid}",
            config.id
        ));

        let setup = || -> std::io::Result<(Poll, IoEngine, SinkId, ControlServer)> {
            let poll = Poll::new()?;
            poll.registry()
                .register(&mut reaper, REAPER, Interest::READABLE)?;
            let mut engine = IoEngine::new();
            let sink = engine.add_sink(started.sink);
            engine.add_output(
                poll.registry(),
                STDOUT,
                started.stdout,
                Stream::Stdout,
                sink,
            )?;
            if let Some(stderr) = started.stderr {
                engine.add_output(poll.registry(), STDERR, stderr, Stream::Stderr, sink)?;
            }
            let control = ControlServer::bind(&layout.control_socket(&config.id), poll.registry())?;
            Ok((poll, engine, sink, control))
        };
        let (poll, engine, sink, control) = match setup() {
            Ok(parts) => parts,
            Err(e) => {
                let _ = runc.delete(
                    config.id.as_str(),
                    DeleteOptions { force: true },
                    &mut ReaperWait(&mut reaper),
                );
                return Err(fail(
                    &layout,
                    &config,
                    format!("set up the event loop: {e}"),
                ));
            }
        };
        let input = match started.stdin {
            Some(file) => {
                let input = attach::ContainerInput::new(file, started.terminal.is_some())
                    .and_then(|input| input.register(poll.registry()).map(|()| input));
                match input {
                    Ok(input) => Some(input),
                    Err(e) => {
                        log.line(format_args!("container stdin unusable: {e}"));
                        None
                    }
                }
            }
            None => None,
        };
        let state = ContainerState {
            id: config.id.clone(),
            status: Status::Running,
            pid: init_pid,
            daemon_pid: std::process::id() as i32,
            bundle: config.bundle.clone(),
            log_path: config.log_path.clone(),
            log_format: config.log_format.clone(),
            runtime: config.runtime.clone(),
            runtime_root: config.runtime_root.clone(),
            created_at: crate::time::now(),
            exit: None,
            oom_killed: false,
        };
        let mut daemon = Daemon {
            config,
            layout,
            runc,
            poll,
            reaper,
            engine,
            sink,
            control,
            state,
            pending_exit: None,
            waiters: Vec::new(),
            reap_needed: false,
            done: false,
            base_process: None,
            execs: ExecTable::default(),
            exec_tokens: tokens::EXEC_PIPES,
            deferred_incoming: Vec::new(),
            input,
            input_eof: false,
            terminal: started.terminal,
            attached: Vec::new(),
            unsaved: Unsaved::default(),
            oom: None,
        };
        daemon.oom = daemon.watch_oom(init_pid, log);
        daemon.save_state(log);
        report(&StartReport::Started { pid: init_pid });
        release_startup_memory();
        // The init may have exited already (reaped while `start` was waited for).
        if let Some(exit) = daemon.reaper.watch(init_pid) {
            daemon.on_init_exit(exit, log);
        }
        Ok(daemon)
    }

    fn serve(&mut self, log: &mut ShimLog) {
        let mut events = Events::with_capacity(64);
        while !self.done {
            let timeout =
                if self.engine.has_backlog() || self.reap_needed || self.control.has_backlog() {
                    Some(Duration::ZERO)
                } else {
                    let exit_deadline = self.pending_exit.as_ref().map(|p| p.deadline);
                    [
                        exit_deadline,
                        self.engine.next_deadline(),
                        self.execs.next_deadline(),
                        self.control.next_deadline(),
                        self.unsaved.retry_at,
                    ]
                    .into_iter()
                    .flatten()
                    .min()
                    .map(|at| at.saturating_duration_since(Instant::now()))
                };
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != std::io::ErrorKind::Interrupted {
                    log.line(format_args!("poll failed: {e}"));
                    return;
                }
            }
            for event in events.iter() {
                let token = event.token();
                if token == REAPER {
                    self.reap_needed = true;
                } else if token == OOM {
                    self.check_oom(log);
                } else if token == CONTAINER_STDIN {
                    self.write_container_input();
                } else if let Some(io_events) = self.engine.handle(self.poll.registry(), token) {
                    self.on_io_events(&io_events, log);
                } else if self.execs.owns(token) {
                    self.exec_ready(token);
                } else if self.control.owns(token) {
                    for incoming in self.control.handle(self.poll.registry(), token) {
                        self.on_incoming(incoming, log);
                    }
                }
            }
            for incoming in self.control.work_backlog(self.poll.registry()) {
                self.on_incoming(incoming, log);
            }
            while !self.deferred_incoming.is_empty() {
                for incoming in std::mem::take(&mut self.deferred_incoming) {
                    self.on_incoming(incoming, log);
                }
            }
            self.control.expire_idle(self.poll.registry());
            if self.unsaved.retry_at.is_some_and(|at| at <= Instant::now()) {
                self.persist(log);
            }
            for client in self.control.take_closed() {
                self.on_incoming(Incoming::Closed(client), log);
            }
            let io_events = self.engine.work_backlog(self.poll.registry());
            self.on_io_events(&io_events, log);
            if self.reap_needed {
                self.reap(log);
            }
            self.exec_tick(log);
            self.exec_resume_throttled();
            self.check_pending_exit(log);
            if let Some(error) = self.engine.sink_mut(self.sink).and_then(|s| s.take_error()) {
                log.line(format_args!(
                    "log {}: {error} (output is dropped until it can be written again)",
                    self.config.log_path.display()
                ));
            }
            if let Some(bytes) = self
                .engine
                .sink_mut(self.sink)
                .and_then(|s| s.take_recovered())
            {
                log.line(format_args!(
                    "log {}: written again; {bytes} bytes of output were dropped",
                    self.config.log_path.display()
                ));
            }
        }
        self.control.flush_all_blocking();
    }

    fn reap(&mut self, log: &mut ShimLog) {
        self.reap_needed = false;
        match self.reaper.reap() {
            Ok(exits) => {
                // Exec exits first: the init's exit is reported only after theirs.
                let mut others = Vec::new();
                for exit in exits {
                    if !self.exec_exited(exit) {
                        others.push(exit);
                    }
                }
                for exit in others {
                    if exit.pid == self.state.pid
                        && self.state.exit.is_none()
                        && self.pending_exit.is_none()
                    {
                        self.on_init_exit(exit, log);
                    }
                }
            }
            Err(e) => log.line(format_args!("reap: {e}")),
        }
    }

    fn watch_oom(&mut self, pid: i32, log: &mut ShimLog) -> Option<OomWatch> {
        let watch = OomWatch::new(pid)
            .map_err(|e| log.line(format_args!("no OOM notifications: {e}")))
            .ok()?;
        self.poll
            .registry()
            .register(&mut SourceFd(&watch.fd()), OOM, Interest::READABLE)
            .map_err(|e| log.line(format_args!("no OOM notifications: {e}")))
            .ok()?;
        Some(watch)
    }

    /// Records an OOM kill the cgroup reported.
    fn check_oom(&mut self, log: &mut ShimLog) {
        if self.oom.as_mut().is_some_and(OomWatch::fired) && !self.state.oom_killed {
            log.line(format_args!(
                "container {} ran out of memory",
                self.config.id
            ));
            self.state.oom_killed = true;
            self.save_state(log);
        }
    }

    fn on_init_exit(&mut self, exit: Exit, log: &mut ShimLog) {
        self.pending_exit = Some(PendingExit {
            exit,
            deadline: Instant::now() + lifecycle::output_grace(&ProcessKey::Init),
        });
        for token in [STDOUT, STDERR] {
            let events = self.engine.drain_output(self.poll.registry(), token);
            self.on_io_events(&events, log);
        }
        self.check_pending_exit(log);
    }

    fn on_io_events(&mut self, events: &[IoEvent], log: &mut ShimLog) {
        for event in events {
            match event {
                IoEvent::Data { stream, bytes, .. } => self.forward_output(*stream, bytes),
                IoEvent::OutputClosed { stream, .. } => {
                    log.line(format_args!(
                        "container {} reached end of stream",
                        stream.as_str()
                    ));
                }
                IoEvent::InputClosed { .. } => {}
            }
        }
    }

    /// Records the pending exit once the output is complete, or the grace period is over.
    fn check_pending_exit(&mut self, log: &mut ShimLog) {
        let Some(pending) = &self.pending_exit else {
            return;
        };
        let outputs_open = [STDOUT, STDERR]
            .into_iter()
            .filter(|t| self.engine.is_output_open(*t))
            .count();
        let output = lifecycle::Output {
            delivered: outputs_open == 0,
            grace_over: Instant::now() >= pending.deadline,
        };
        let execs_running = self.execs.any_running();
        if !lifecycle::exit_may_be_recorded(&ProcessKey::Init, output, execs_running)
            && !output.grace_over
        {
            return;
        }
        if outputs_open > 0 {
            log.line(
                "output still held open after the grace period (an orphan has it); closing it",
            );
            for token in [STDOUT, STDERR] {
                let events = self.engine.close_output(self.poll.registry(), token);
                self.on_io_events(&events, log);
            }
        }
        let exit = self.pending_exit.take().expect("checked above").exit;
        self.record_exit(exit, log);
        log.line(format_args!("init {} exited: {}", exit.pid, exit.status));
    }

    fn record_exit(&mut self, exit: Exit, log: &mut ShimLog) {
        if lifecycle::oom_before_exit(&ProcessKey::Init) {
            self.check_oom(log);
        }
        let code = exit.code();
        self.state.status = Status::Stopped;
        self.state.exit = Some(ExitRecord::new(&exit, crate::time::rfc3339(exit.reaped_at)));
        self.unsaved.exit = true;
        let response = Response::Ok(Reply::Exit { exit_code: code });
        for waiter in std::mem::take(&mut self.waiters) {
            self.control.reply(self.poll.registry(), waiter, &response);
        }
        self.attach_exit(code);
        self.save_state(log);
        log.line(format_args!("exit recorded: code {code}"));
    }

    fn save_state(&mut self, log: &mut ShimLog) {
        self.unsaved.state = true;
        self.persist(log);
    }

    /// Writes the exit file and state.json that are not on disk yet. One that fails (a full state
    /// dir) is tried again every [`PERSIST_RETRY`] until it is written: the exit is never lost.
    fn persist(&mut self, log: &mut ShimLog) {
        let first_failure = self.unsaved.retry_at.is_none();
        let mut failed = false;
        if self.unsaved.exit {
            if let Some(exit) = &self.state.exit {
                let path = self.layout.exit_file(&self.config.id);
                match write_atomically(&path, format!("{}\n", exit.code).as_bytes()) {
                    Ok(()) => self.unsaved.exit = false,
                    Err(e) => {
                        failed = true;
                        if first_failure {
                            log.line(format_args!(
                                "write exit file: {e} (tried again until written)"
                            ));
                        }
                    }
                }
            }
        }
        if self.unsaved.state {
            let json = serde_json::to_vec_pretty(&self.state).expect("state serializes");
            match write_atomically(&self.layout.state_file(&self.config.id), &json) {
                Ok(()) => self.unsaved.state = false,
                Err(e) => {
                    failed = true;
                    if first_failure {
                        log.line(format_args!(
                            "write state.json: {e} (tried again until written)"
                        ));
                    }
                }
            }
        }
        if failed {
            self.unsaved.retry_at = Instant::now().checked_add(PERSIST_RETRY);
        } else if self.unsaved.retry_at.take().is_some() {
            log.line(format_args!("state written again"));
        }
    }
}
