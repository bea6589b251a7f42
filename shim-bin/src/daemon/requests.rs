//! Requests from control clients: dispatching lines and frames, and the requests answered at once
//! (state, kill, pids, pause, resume, reopen_log, exec_state, delete; wait is answered at the exit).

use super::control::Incoming;
use super::record::ShimLog;
use super::{Daemon, ReaperWait, RUNTIME_TIMEOUT, STDERR, STDOUT};
use mio::Token;
use shim_core::lifecycle::{self, DeletePlan, Phase};
use shim_core::protocol::{ErrorKind, Reply, Request, Response};
use shim_core::Exit;
use shim_core::Status;
use shim_runc::{DeleteOptions, KillOptions};
use std::time::SystemTime;

impl Daemon {
    /// One thing a control client did.
    pub(super) fn on_incoming(&mut self, incoming: Incoming, log: &mut ShimLog) {
        match incoming {
            Incoming::Request(client, Ok(Request::Exec(request))) => {
                let detach = request.detach;
                let response = self.start_exec(client, request, log);
                self.control.reply(self.poll.registry(), client, &response);
                if let Response::Ok(Reply::Exec { exec_id, .. }) = response {
                    if !detach {
                        let early = self.control.set_framed(client);
                        self.deferred_incoming.extend(early);
                    }
                    self.begin_exec(&exec_id);
                }
            }
            Incoming::Request(client, Ok(Request::Attach)) => {
                let response = self.attach(client, log);
                self.control.reply(self.poll.registry(), client, &response);
                if matches!(response, Response::Ok(_)) {
                    let early = self.control.set_framed(client);
                    self.deferred_incoming.extend(early);
                }
            }
            Incoming::Request(client, Ok(request)) => {
                if let Some(response) = self.on_request(client, request, log) {
                    self.control.reply(self.poll.registry(), client, &response);
                }
            }
            Incoming::Request(client, Err(response)) => {
                self.control.reply(self.poll.registry(), client, &response);
            }
            Incoming::Frame(client, kind, payload) => {
                if let Some(exec_id) = self.execs.session_of_client(client) {
                    self.exec_frame(&exec_id, kind, payload);
                } else if self.attached.contains(&client) {
                    self.attach_frame(kind, payload);
                }
            }
            Incoming::Closed(client) => {
                self.waiters.retain(|w| *w != client);
                self.attach_closed(client);
                if let Some(exec_id) = self.execs.session_of_client(client) {
                    self.exec_client_closed(&exec_id);
                }
            }
        }
    }

    /// Handles one request; None means the answer comes later (`wait`).
    fn on_request(
        &mut self,
        client: Token,
        request: Request,
        log: &mut ShimLog,
    ) -> Option<Response> {
        let id = self.config.id.as_str().to_owned();
        let running = matches!(self.state.status, Status::Running | Status::Paused);
        let not_running = || {
            Response::error(
                ErrorKind::InvalidState,
                format!("container {id} is not running"),
            )
        };
        let runtime_error =
            |e: shim_runc::Error| Response::error(ErrorKind::Runtime, e.to_string());
        let done = Response::Ok(Reply::Done {});
        let response = match request {
            Request::State => Response::Ok(Reply::State(Box::new(self.state.clone()))),
            Request::Wait => match &self.state.exit {
                Some(exit) => Response::Ok(Reply::Exit {
                    exit_code: exit.code,
                }),
                None => {
                    self.waiters.push(client);
                    return None;
                }
            },
            Request::Kill { .. } | Request::Pids | Request::Pause | Request::Resume if !running => {
                not_running()
            }
            Request::Kill { signal, all } => {
                self.reap_needed = true;
                match self.runc.kill(
                    &id,
                    KillOptions::new(signal).all(all),
                    &mut ReaperWait(&mut self.reaper),
                ) {
                    Ok(()) => done,
                    Err(e) => runtime_error(e),
                }
            }
            Request::Pids => {
                self.reap_needed = true;
                match self.runc.ps(&id, &mut ReaperWait(&mut self.reaper)) {
                    Ok(pids) => Response::Ok(Reply::Pids { pids }),
                    Err(e) => runtime_error(e),
                }
            }
            Request::Pause | Request::Resume => {
                self.reap_needed = true;
                let pause = request == Request::Pause;
                let result = if pause {
                    self.runc.pause(&id, &mut ReaperWait(&mut self.reaper))
                } else {
                    self.runc.resume(&id, &mut ReaperWait(&mut self.reaper))
                };
                match result {
                    Ok(()) => {
                        self.state.status = if pause {
                            Status::Paused
                        } else {
                            Status::Running
                        };
                        self.save_state(log);
                        done
                    }
                    Err(e) => runtime_error(e),
                }
            }
            Request::ReopenLog => match self.engine.sink_mut(self.sink).map(|s| s.reopen()) {
                Some(Ok(())) => done,
                Some(Err(e)) => Response::error(
                    ErrorKind::Internal,
                    format!("reopen {}: {e}", self.config.log_path.display()),
                ),
                None => done,
            },
            Request::Delete { force } => return Some(self.delete(force, log)),
            Request::ExecState { exec_id } => match self.execs.state(&exec_id) {
                Some(reply) => Response::Ok(reply),
                None => Response::error(
                    ErrorKind::BadRequest,
                    format!("no exec {exec_id:?} in container {id}"),
                ),
            },
            Request::Exec(_) | Request::Attach => {
                Response::error(ErrorKind::Internal, "exec and attach are handled elsewhere")
            }
        };
        Some(response)
    }

    /// Where the init is in its life, in the lifecycle rules' terms.
    fn phase(&self) -> Phase {
        if self.state.exit.is_some() {
            Phase::Exited
        } else if self.pending_exit.is_some() {
            Phase::Exiting
        } else if self.state.status == Status::Paused {
            Phase::Paused
        } else {
            Phase::Running
        }
    }

    fn delete(&mut self, force: bool, log: &mut ShimLog) -> Response {
        let id = self.config.id.as_str().to_owned();
        let plan = match lifecycle::delete_plan(self.phase(), force) {
            Ok(plan) => plan,
            Err(_) => {
                return Response::error(
                    ErrorKind::InvalidState,
                    format!("container {id} is running; kill it first or force the removal (tether rm -f {id})"),
                )
            }
        };
        self.reap_needed = true;
        if let Err(e) = self.runc.delete(
            &id,
            DeleteOptions {
                force: plan == DeletePlan::Force,
            },
            &mut ReaperWait(&mut self.reaper),
        ) {
            return Response::error(ErrorKind::Runtime, e.to_string());
        }
        if self.state.exit.is_none() {
            // Forced: the init is dying; record its exit (and drain its output) before going.
            let exit = self
                .pending_exit
                .take()
                .map(|p| p.exit)
                .or_else(|| self.reaper.wait_for(self.state.pid, RUNTIME_TIMEOUT).ok());
            for token in [STDOUT, STDERR] {
                self.engine.close_output(self.poll.registry(), token);
            }
            let exit = exit.unwrap_or_else(|| Exit::forced(self.state.pid, SystemTime::now()));
            self.record_exit(exit, log);
        }
        log.line(format_args!("container {id} deleted; daemon exits"));
        // Gone from disk before the answer is sent, so `tether rm` returning means the id is free.
        // (The connection carrying the answer outlives its socket file.)
        let _ = std::fs::remove_dir_all(self.layout.container_dir(&self.config.id));
        self.done = true;
        Response::Ok(Reply::Done {})
    }
}
