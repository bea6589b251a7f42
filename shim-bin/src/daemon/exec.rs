//! `exec`: processes started in the running container with `runtime exec --detach`, their output
//! streamed to the client as frames, their stdin (or terminal) fed from it, their exit delivered only
//! once their output is complete — or after the exec's output grace (see
//! [`shim_core::lifecycle::output_grace`]) when an orphaned background
//! child keeps a pipe open, so `sh -c 'sleep 100 &'` returns at once.

use super::nonblocking::{pipe, set_nonblocking, write_pending};
use super::process::{build_process, kill_tree};
use super::record::ShimLog;
use super::{Daemon, ReaperWait};
use crate::sys::{receive_terminal, set_window};
use mio::unix::SourceFd;
use mio::{Interest, Token};
use shim_core::frame::{self, FrameKind};
use shim_core::protocol::{ErrorBody, ErrorKind, ExecRequest, Reply, Response};
use shim_reaper::{Exit, ExitStatus};
use shim_runc::{ExecOptions, ProcessIo};
use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

/// Stop reading an exec's output while this much is queued for its client (the process then blocks
/// on a full pipe, as it would writing to a slow terminal).
const CLIENT_HIGH_WATER: usize = 1 << 20;
/// Stop reading a client's stdin frames while this much waits for the process to take it.
const STDIN_HIGH_WATER: usize = 1 << 20;
/// Finished execs remembered for `exec_state`.
const FINISHED_KEPT: usize = 256;

struct ExecOutput {
    token: Token,
    file: File,
    kind: FrameKind,
}

struct ExecInput {
    token: Token,
    file: File,
    pending: Vec<u8>,
    /// The client's stdin ended: close once `pending` is written (pipes only).
    eof: bool,
    terminal: bool,
}

pub(super) struct ExecSession {
    pid: i32,
    client: Option<Token>,
    outputs: Vec<ExecOutput>,
    input: Option<ExecInput>,
    terminal: Option<File>,
    exit: Option<ExitStatus>,
    grace_deadline: Option<Instant>,
    kill_deadline: Option<Instant>,
    timeout: Option<Duration>,
    timed_out: bool,
}

/// Every exec of the container.
#[derive(Default)]
pub(super) struct ExecTable {
    sessions: HashMap<String, ExecSession>,
    tokens: HashMap<Token, String>,
    finished: VecDeque<(String, i32)>,
    started: u64,
}

impl ExecTable {
    /// Whether an exec still runs (reaped ones wait only for their output).
    pub fn any_running(&self) -> bool {
        self.sessions.values().any(|s| s.exit.is_none())
    }

    pub fn owns(&self, token: Token) -> bool {
        self.tokens.contains_key(&token)
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.sessions
            .values()
            .flat_map(|s| [s.grace_deadline, s.kill_deadline])
            .flatten()
            .min()
    }

    /// The session a client streams, if any.
    pub fn session_of_client(&self, client: Token) -> Option<String> {
        self.sessions
            .iter()
            .find(|(_, s)| s.client == Some(client))
            .map(|(id, _)| id.clone())
    }

    pub fn state(&self, exec_id: &str) -> Option<Reply> {
        if self.sessions.contains_key(exec_id) {
            return Some(Reply::ExecState {
                exec_id: exec_id.to_owned(),
                running: self.sessions[exec_id].exit.is_none(),
                exit_code: self.sessions[exec_id].exit.map(ExitStatus::code),
            });
        }
        self.finished
            .iter()
            .find(|(id, _)| id == exec_id)
            .map(|(id, code)| Reply::ExecState {
                exec_id: id.clone(),
                running: false,
                exit_code: Some(*code),
            })
    }
}

impl Daemon {
    fn allocate_token(&mut self) -> Token {
        self.exec_tokens.take()
    }

    /// Starts an exec. On success the answer is `Reply::Exec`; unless detached, the caller switches
    /// the connection to frames.
    pub(super) fn start_exec(
        &mut self,
        client: Token,
        request: ExecRequest,
        log: &mut ShimLog,
    ) -> Response {
        let id = self.config.id.as_str().to_owned();
        if self.state.exit.is_some() || self.pending_exit.is_some() {
            return Response::error(
                ErrorKind::InvalidState,
                format!("container {id} is not running"),
            );
        }
        if self.base_process.is_none() {
            let path = self.config.bundle.join("config.json");
            match oci_spec::runtime::Spec::load(&path) {
                Ok(spec) => self.base_process = Some(spec.process().clone().unwrap_or_default()),
                Err(e) => {
                    return Response::error(
                        ErrorKind::Internal,
                        format!("exec: {}: {e}", path.display()),
                    )
                }
            }
        }
        let base = self.base_process.as_ref().expect("loaded above");
        let process = match build_process(base, &request) {
            Ok(process) => process,
            Err(message) => return Response::error(ErrorKind::BadRequest, message),
        };
        self.execs.started += 1;
        let exec_id = format!("exec-{}", self.execs.started);
        let dir = self.layout.container_dir(&self.config.id);
        let pid_file = dir.join(format!("{exec_id}.pid"));
        let console_path = dir.join(format!("{exec_id}.console.sock"));
        let result = self.spawn_exec(&request, &process, &pid_file, &console_path);
        let _ = std::fs::remove_file(&pid_file);
        let _ = std::fs::remove_file(&console_path);
        let (pid, mut session) = match result {
            Ok(started) => started,
            Err(response) => return response,
        };
        session.client = (!request.detach).then_some(client);
        session.timeout = request.timeout_secs.map(Duration::from_secs);
        // The protocol bounds the timeout; a deadline past what an Instant holds means "never".
        session.kill_deadline = session.timeout.and_then(|t| Instant::now().checked_add(t));
        if let (Some(terminal), Some((rows, cols))) = (&session.terminal, request.window) {
            set_window(terminal, rows, cols);
        }
        for output in &session.outputs {
            let _ = self.poll.registry().register(
                &mut SourceFd(&output.file.as_raw_fd()),
                output.token,
                Interest::READABLE,
            );
            self.execs.tokens.insert(output.token, exec_id.clone());
        }
        if let Some(input) = &session.input {
            let _ = self.poll.registry().register(
                &mut SourceFd(&input.file.as_raw_fd()),
                input.token,
                Interest::WRITABLE,
            );
            self.execs.tokens.insert(input.token, exec_id.clone());
        }
        log.line(format_args!(
            "{exec_id} started: pid {pid}, {:?}",
            request.args
        ));
        self.execs.sessions.insert(exec_id.clone(), session);
        Response::Ok(Reply::Exec { exec_id, pid })
    }

    /// Starts copying for an exec whose answer has been sent (frames must come after it).
    pub(super) fn begin_exec(&mut self, exec_id: &str) {
        let Some(pid) = self.execs.sessions.get(exec_id).map(|s| s.pid) else {
            return;
        };
        // A very quick process may have been reaped while `exec` was waited for.
        if let Some(exit) = self.reaper.watch(pid) {
            self.exec_exited(exit);
        }
        self.exec_pump(exec_id);
    }

    fn spawn_exec(
        &mut self,
        request: &ExecRequest,
        process: &oci_spec::runtime::Process,
        pid_file: &std::path::Path,
        console_path: &std::path::Path,
    ) -> Result<(i32, ExecSession), Response> {
        let internal = |what: &str, e: io::Error| {
            Response::error(ErrorKind::Internal, format!("exec: {what}: {e}"))
        };
        let null = || File::open("/dev/null").map_err(|e| internal("/dev/null", e));
        let mut options = ExecOptions {
            detach: true,
            pid_file: Some(pid_file.to_owned()),
            ..ExecOptions::default()
        };
        let mut outputs = Vec::new();
        let mut input = None;
        let mut terminal = None;
        let console = if request.tty {
            let listener = std::os::unix::net::UnixListener::bind(console_path)
                .map_err(|e| internal("console socket", e))?;
            options.console_socket = Some(console_path.to_owned());
            Some(listener)
        } else {
            None
        };
        let io = if request.tty || request.detach {
            ProcessIo::new(null()?, null()?, null()?)
        } else {
            let (out_read, out_write) = pipe().map_err(|e| internal("pipe", e))?;
            let (err_read, err_write) = pipe().map_err(|e| internal("pipe", e))?;
            let stdin = if request.stdin {
                let (in_read, in_write) = pipe().map_err(|e| internal("pipe", e))?;
                set_nonblocking(&in_write).map_err(|e| internal("pipe", e))?;
                input = Some(ExecInput {
                    token: self.allocate_token(),
                    file: File::from(in_write),
                    pending: Vec::new(),
                    eof: false,
                    terminal: false,
                });
                File::from(in_read)
            } else {
                null()?
            };
            for (read_end, kind) in [(out_read, FrameKind::Stdout), (err_read, FrameKind::Stderr)] {
                set_nonblocking(&read_end).map_err(|e| internal("pipe", e))?;
                outputs.push(ExecOutput {
                    token: self.allocate_token(),
                    file: File::from(read_end),
                    kind,
                });
            }
            ProcessIo::new(stdin, File::from(out_write), File::from(err_write))
        };
        self.reap_needed = true;
        if let Err(e) = self.runc.exec(
            self.config.id.as_str(),
            process,
            &options,
            io,
            &mut ReaperWait(&mut self.reaper),
        ) {
            return Err(Response::Error(ErrorBody {
                kind: ErrorKind::Runtime,
                exit_code: Some(e.start_failure_code()),
                message: e.to_string(),
            }));
        }
        let pid: i32 = std::fs::read_to_string(pid_file)
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .ok_or_else(|| Response::error(ErrorKind::Runtime, "exec: the runtime wrote no pid"))?;
        if let Some(listener) = console {
            match receive_terminal(&listener) {
                Ok(master) => {
                    set_nonblocking(&master).map_err(|e| internal("terminal", e))?;
                    let master = File::from(master);
                    let reader = master.try_clone().map_err(|e| internal("terminal", e))?;
                    let writer = master.try_clone().map_err(|e| internal("terminal", e))?;
                    outputs.push(ExecOutput {
                        token: self.allocate_token(),
                        file: reader,
                        kind: FrameKind::Stdout,
                    });
                    if !request.detach {
                        input = Some(ExecInput {
                            token: self.allocate_token(),
                            file: writer,
                            pending: Vec::new(),
                            eof: false,
                            terminal: true,
                        });
                    }
                    terminal = Some(master);
                }
                Err(e) => {
                    kill_tree(pid);
                    return Err(internal("terminal", e));
                }
            }
        }
        Ok((
            pid,
            ExecSession {
                pid,
                client: None,
                outputs,
                input,
                terminal,
                exit: None,
                grace_deadline: None,
                kill_deadline: None,
                timeout: None,
                timed_out: false,
            },
        ))
    }

    /// A readiness event on one of an exec's pipes.
    pub(super) fn exec_ready(&mut self, token: Token) {
        if let Some(exec_id) = self.execs.tokens.get(&token).cloned() {
            self.exec_pump(&exec_id);
        }
    }

    /// Copies what can be copied for one exec, then finishes it if it is done.
    fn exec_pump(&mut self, exec_id: &str) {
        self.exec_write_input(exec_id);
        self.exec_read_outputs(exec_id, false);
        self.exec_finish_if_done(exec_id);
    }

    fn exec_read_outputs(&mut self, exec_id: &str, force: bool) {
        let Some(session) = self.execs.sessions.get_mut(exec_id) else {
            return;
        };
        let mut buffer = [0u8; 64 * 1024];
        let mut closed = Vec::new();
        for (index, output) in session.outputs.iter_mut().enumerate() {
            loop {
                let backlog = session
                    .client
                    .and_then(|c| self.control.pending_output(c))
                    .unwrap_or(0);
                if !force && backlog >= CLIENT_HIGH_WATER {
                    break;
                }
                match output.file.read(&mut buffer) {
                    Ok(0) => {
                        closed.push(index);
                        break;
                    }
                    Ok(n) => {
                        if let Some(client) = session.client {
                            self.control.send_frame(
                                self.poll.registry(),
                                client,
                                output.kind,
                                &buffer[..n],
                            );
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    // EIO: a terminal whose other side is closed; like EOF.
                    Err(_) => {
                        closed.push(index);
                        break;
                    }
                }
            }
        }
        for index in closed.into_iter().rev() {
            let output = session.outputs.remove(index);
            let _ = self
                .poll
                .registry()
                .deregister(&mut SourceFd(&output.file.as_raw_fd()));
            self.execs.tokens.remove(&output.token);
        }
    }

    fn exec_write_input(&mut self, exec_id: &str) {
        let Some(session) = self.execs.sessions.get_mut(exec_id) else {
            return;
        };
        let Some(input) = &mut session.input else {
            return;
        };
        let broken = write_pending(&mut input.file, &mut input.pending).is_err();
        let done = broken || (input.eof && input.pending.is_empty() && !input.terminal);
        let drained = input.pending.len() < STDIN_HIGH_WATER / 2;
        if done {
            let input = session.input.take().expect("checked above");
            let _ = self
                .poll
                .registry()
                .deregister(&mut SourceFd(&input.file.as_raw_fd()));
            self.execs.tokens.remove(&input.token);
        }
        if drained {
            if let Some(client) = session.client {
                let incoming = self.control.set_reading(self.poll.registry(), client, true);
                self.deferred_incoming.extend(incoming);
            }
        }
    }

    /// A frame from an exec client.
    pub(super) fn exec_frame(&mut self, exec_id: &str, kind: FrameKind, payload: Vec<u8>) {
        let Some(session) = self.execs.sessions.get_mut(exec_id) else {
            return;
        };
        match kind {
            FrameKind::Stdin => {
                if let Some(input) = &mut session.input {
                    input.pending.extend_from_slice(&payload);
                    if input.pending.len() >= STDIN_HIGH_WATER {
                        if let Some(client) = session.client {
                            self.control
                                .set_reading(self.poll.registry(), client, false);
                        }
                    }
                }
            }
            FrameKind::StdinEof => {
                if let Some(input) = &mut session.input {
                    input.eof = true;
                }
            }
            FrameKind::Resize => {
                if let (Some(terminal), Some((rows, cols))) =
                    (&session.terminal, frame::parse_resize(&payload))
                {
                    set_window(terminal, rows, cols);
                }
            }
            _ => {}
        }
        self.exec_pump(exec_id);
    }

    /// The exec's client went away: the process keeps running with its stdin closed; its output is
    /// read and dropped so it never blocks.
    pub(super) fn exec_client_closed(&mut self, exec_id: &str) {
        let Some(session) = self.execs.sessions.get_mut(exec_id) else {
            return;
        };
        session.client = None;
        if let Some(input) = session.input.take() {
            let _ = self
                .poll
                .registry()
                .deregister(&mut SourceFd(&input.file.as_raw_fd()));
            self.execs.tokens.remove(&input.token);
        }
        self.exec_pump(exec_id);
    }

    /// A reaped exit; returns whether it was an exec's.
    pub(super) fn exec_exited(&mut self, exit: Exit) -> bool {
        let Some((exec_id, session)) = self
            .execs
            .sessions
            .iter_mut()
            .find(|(_, s)| s.pid == exit.pid)
        else {
            return false;
        };
        let exec_id = exec_id.clone();
        session.exit = Some(exit.status);
        session.kill_deadline = None;
        session.grace_deadline = Some(Instant::now() + shim_core::lifecycle::EXEC_OUTPUT_GRACE);
        self.exec_pump(&exec_id);
        true
    }

    /// Timeouts and grace periods that came due; execs that can be finished.
    pub(super) fn exec_tick(&mut self, log: &mut ShimLog) {
        let now = Instant::now();
        let ids: Vec<String> = self.execs.sessions.keys().cloned().collect();
        for exec_id in ids {
            let Some(session) = self.execs.sessions.get_mut(&exec_id) else {
                continue;
            };
            if session.kill_deadline.is_some_and(|at| at <= now) {
                session.kill_deadline = None;
                session.timed_out = true;
                log.line(format_args!(
                    "{exec_id} ran past its timeout of {:?}; killing it",
                    session.timeout.unwrap_or_default()
                ));
                kill_tree(session.pid);
                self.reap_needed = true;
            }
            let grace_over = session.grace_deadline.is_some_and(|at| at <= now);
            if grace_over {
                // Take what is there now, then stop waiting for an orphan to let go of the pipes.
                self.exec_read_outputs(&exec_id, true);
                if let Some(session) = self.execs.sessions.get_mut(&exec_id) {
                    for output in session.outputs.drain(..) {
                        let _ = self
                            .poll
                            .registry()
                            .deregister(&mut SourceFd(&output.file.as_raw_fd()));
                        self.execs.tokens.remove(&output.token);
                    }
                }
            }
            self.exec_pump(&exec_id);
        }
    }

    fn exec_finish_if_done(&mut self, exec_id: &str) {
        let Some(session) = self.execs.sessions.get(exec_id) else {
            return;
        };
        let Some(status) = session.exit else { return };
        if !session.outputs.is_empty() {
            return;
        }
        let session = self.execs.sessions.remove(exec_id).expect("present above");
        if let Some(input) = &session.input {
            let _ = self
                .poll
                .registry()
                .deregister(&mut SourceFd(&input.file.as_raw_fd()));
            self.execs.tokens.remove(&input.token);
        }
        let code = status.code();
        if let Some(client) = session.client {
            let payload =
                serde_json::json!({"exit_code": code, "timed_out": session.timed_out}).to_string();
            self.control.send_frame(
                self.poll.registry(),
                client,
                FrameKind::Exit,
                payload.as_bytes(),
            );
            self.control
                .close_when_flushed(self.poll.registry(), client);
        }
        self.execs.finished.push_back((exec_id.to_owned(), code));
        while self.execs.finished.len() > FINISHED_KEPT {
            self.execs.finished.pop_front();
        }
    }

    /// Keeps reading exec outputs that paused for a slow client once it caught up.
    pub(super) fn exec_resume_throttled(&mut self) {
        let ids: Vec<String> = self
            .execs
            .sessions
            .iter()
            .filter(|(_, s)| {
                !s.outputs.is_empty()
                    && s.client
                        .and_then(|c| self.control.pending_output(c))
                        .is_some_and(|pending| pending < CLIENT_HIGH_WATER / 2)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for exec_id in ids {
            self.exec_pump(&exec_id);
        }
    }
}
