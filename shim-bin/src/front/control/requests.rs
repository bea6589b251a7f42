//! tether's door's request mapping: each request of docs/protocol.md checked, handed to one of
//! the supervisor's operations, and its answer (or refusal) said in the protocol's words. Whether a
//! request may be done is the supervisor's rule, the same for both doors; what a refusal says is
//! this door's: in docker's words.

use super::{front_mut, front_ref, Owner};
use crate::shim::Supervisor;
use mio::Token;
use shim_core::lifecycle::Phase;
use shim_core::protocol::{ErrorKind, ExecRequest, Reply, Request, Response};
use shim_core::{ExecId, ProcessKey};

/// An operation's answer, a refusal for the container's phase said as `refusal` says it.
fn refused_as(result: shim_core::Result<()>, refusal: impl FnOnce() -> Response) -> Response {
    match result {
        Ok(()) => Response::Ok(Reply::Done {}),
        Err(e)
            if matches!(
                e.kind,
                shim_core::ErrorKind::NotFound | shim_core::ErrorKind::InvalidState
            ) =>
        {
            refusal()
        }
        Err(e) => Response::from_error(e),
    }
}

/// The answer to requests that belong to containerd's clients.
fn refused(id: &str, what: &str) -> Response {
    Response::error(
        ErrorKind::BadRequest,
        format!("container {id} is managed by containerd: {what} it through containerd (ctr, nerdctl, crictl)"),
    )
}

/// Answers a request of docs/protocol.md; None: later (`wait`).
pub(super) fn tether_request(
    s: &mut Supervisor,
    client: Token,
    request: Request,
) -> Option<Response> {
    let id = s.id.clone();
    let owner = front_ref(&s.door)?.owner;
    let not_running = || {
        Response::error(
            ErrorKind::InvalidState,
            format!("container {id} is not running"),
        )
    };
    let running = matches!(
        s.process(&ProcessKey::Init).map(|init| init.phase()),
        Ok(Phase::Running | Phase::Paused)
    );
    Some(match request {
        Request::State => match s.container_state() {
            Some(state) => Response::Ok(Reply::State(Box::new(state))),
            None => Response::error(
                ErrorKind::InvalidState,
                format!("container {id} was deleted"),
            ),
        },
        Request::Wait => match s.container_state().and_then(|s| s.exit) {
            Some(exit) => Response::Ok(Reply::Exit {
                exit_code: exit.code,
            }),
            None => {
                front_mut(&mut s.door)?.waiters.push(client);
                return None;
            }
        },
        // Whether these may be done is the supervisor's rule, the same for both doors; what
        // a refusal says is this door's: in docker's words.
        Request::Kill { signal, all } => {
            let killed = s.kill(&ProcessKey::Init, signal.max(0) as u32, all);
            refused_as(killed.map(drop), not_running)
        }
        Request::Pids => match s.pids() {
            Ok(pids) => Response::Ok(Reply::Pids {
                pids: pids.into_iter().map(|(pid, _)| pid).collect(),
            }),
            Err(e) => refused_as(Err(e), not_running),
        },
        Request::Pause => refused_as(s.pause(true), not_running),
        Request::Resume => refused_as(s.pause(false), || {
            Response::error(
                ErrorKind::InvalidState,
                format!("container {id} is not paused"),
            )
        }),
        Request::ReopenLog => match s.copier.reopen_log() {
            Ok(()) => Response::Ok(Reply::Done {}),
            Err(e) => Response::error(ErrorKind::Internal, format!("reopen the log: {e}")),
        },
        Request::Delete { .. } if owner == Owner::Containerd => refused(&id, "delete"),
        Request::Exec(_) | Request::ExecState { .. } if owner == Owner::Containerd => {
            refused(&id, "exec into")
        }
        Request::Attach if owner == Owner::Containerd => refused(&id, "attach to"),
        Request::Delete { force } => tether_delete(s, force),
        Request::Exec(_) if !running => not_running(),
        Request::Attach if !s.may_attach() => not_running(),
        Request::Exec(request) => tether_exec(s, client, request),
        Request::ExecState { exec_id } => exec_state(s, &exec_id),
        Request::Attach => attach(s, client),
    })
}

/// `delete`: the container goes, and with it this daemon.
fn tether_delete(s: &mut Supervisor, force: bool) -> Response {
    let id = s.id.clone();
    match s.delete_container(force) {
        Ok(_) => {
            s.diag
                .info(format_args!("container {id} deleted; daemon exits"));
            s.done = true;
            Response::Ok(Reply::Done {})
        }
        Err(e) if e.kind == shim_core::ErrorKind::InvalidState => Response::error(
            ErrorKind::InvalidState,
            format!(
                "container {id} is running; kill it first or force the removal (tether rm -f {id})"
            ),
        ),
        Err(e) => Response::from_error(e),
    }
}

/// `exec`: a process started in the container, streamed to the client as frames unless
/// detached ([`Supervisor::start_session`]).
fn tether_exec(s: &mut Supervisor, client: Token, request: ExecRequest) -> Response {
    let client = (!request.detach).then_some(client);
    match s.start_session(&request, client) {
        Ok((exec_id, pid)) => Response::Ok(Reply::Exec {
            exec_id: exec_id.to_string(),
            pid,
        }),
        Err(e) => Response::from_error(e),
    }
}

fn exec_state(s: &Supervisor, exec_id: &str) -> Response {
    let not_found = || {
        Response::error(
            ErrorKind::BadRequest,
            format!("no exec {exec_id:?} in container {}", s.id),
        )
    };
    let Ok(exec_id) = ExecId::new(exec_id) else {
        return not_found();
    };
    match s.exec_state(&exec_id) {
        Some((running, exit_code)) => Response::Ok(Reply::ExecState {
            exec_id: exec_id.to_string(),
            running,
            exit_code,
        }),
        None => not_found(),
    }
}

/// `attach`: the client sees the container's output from now on (as frames), may write to its
/// stdin (pipe or terminal) and resize its terminal.
fn attach(s: &mut Supervisor, client: Token) -> Response {
    let (tty, stdin) = match s.process(&ProcessKey::Init) {
        Ok(init) => (init.terminal.is_some(), init.input.is_some()),
        Err(e) => return Response::from_error(e),
    };
    if s.door.is_none() {
        return Response::error(ErrorKind::Internal, "no door");
    }
    let count = s.attach_client(client);
    s.diag
        .info(format_args!("attach client joined ({count} attached)"));
    Response::Ok(Reply::Attach { tty, stdin })
}
