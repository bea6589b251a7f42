//! tether's own front end on the containerd shim's core: the container is registered in tether's
//! state directory (`$TETHER_STATE_DIR`, default /run/tether) with a `state.json` and the JSON-lines
//! control socket of docs/protocol.md, so `tether ps`, `state`, `wait`, `kill`, `pause` and `resume`
//! see and act on containers containerd started, through the same core that serves ttrpc.
//! Removing the container, exec and attach belong to containerd's clients and are refused.

use crate::daemon::control::{ControlServer, Incoming};
use crate::daemon::record::write_atomically;
use mio::{Registry, Token};
use shim_core::protocol::{ErrorKind, Response};
use shim_core::{ContainerId, ContainerState, StateLayout};
use std::os::unix::fs::DirBuilderExt;

/// The file that marks an entry of tether's state directory as a containerd shim's.
const MARKER: &str = "containerd-shim";

/// The container's entry in tether's state directory, and its control socket.
pub struct TetherFront {
    layout: StateLayout,
    id: ContainerId,
    server: ControlServer,
    /// Clients waiting for the exit.
    pub waiters: Vec<Token>,
    /// What `state.json` holds now.
    written: Option<ContainerState>,
}

impl std::fmt::Debug for TetherFront {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TetherFront").field("id", &self.id).finish()
    }
}

impl TetherFront {
    /// Registers container `id` under tether's state directory. Fails (one line) when the id is
    /// not one tether accepts or is taken by a container `tether run` started.
    pub fn register(id: &str, registry: &Registry) -> Result<TetherFront, String> {
        let layout = state_layout();
        let id: ContainerId = id
            .parse()
            .map_err(|e| format!("not listed by tether: {e}"))?;
        std::fs::create_dir_all(layout.root())
            .map_err(|e| format!("{}: {e}", layout.root().display()))?;
        let dir = layout.container_dir(&id);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|e| format!("not listed by tether: {}: {e}", dir.display()))?;
        let made = (|| {
            std::fs::write(dir.join(MARKER), "")?;
            std::fs::write(
                layout.daemon_pid_file(&id),
                format!("{}\n", std::process::id()),
            )?;
            ControlServer::bind(&layout.control_socket(&id), registry)
        })();
        match made {
            Ok(server) => Ok(TetherFront {
                layout,
                id,
                server,
                waiters: Vec::new(),
                written: None,
            }),
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                Err(format!("not listed by tether: {e}"))
            }
        }
    }

    pub fn owns(&self, token: Token) -> bool {
        self.server.owns(token)
    }

    /// When an idle client is due to be closed.
    pub fn next_deadline(&self) -> Option<std::time::Instant> {
        self.server.next_deadline()
    }

    /// Closes idle clients; returns what that ended.
    pub fn expire_idle(&mut self, registry: &Registry) -> Vec<Incoming> {
        self.server.expire_idle(registry);
        self.server
            .take_closed()
            .into_iter()
            .map(Incoming::Closed)
            .collect()
    }

    /// What clients did on a readiness event.
    pub fn handle(&mut self, registry: &Registry, token: Token) -> Vec<Incoming> {
        let mut incoming = self.server.handle(registry, token);
        incoming.extend(self.server.take_closed().into_iter().map(Incoming::Closed));
        incoming
    }

    pub fn reply(&mut self, registry: &Registry, client: Token, response: &Response) {
        self.server.reply(registry, client, response);
    }

    /// Writes `state.json` when the state changed.
    pub fn save(&mut self, state: ContainerState) {
        if self.written.as_ref() == Some(&state) {
            return;
        }
        let json = serde_json::to_vec_pretty(&state).expect("state serializes");
        let _ = write_atomically(&self.layout.state_file(&self.id), &json);
        self.written = Some(state);
    }

    /// Answers the exit waiters.
    pub fn exited(&mut self, registry: &Registry, code: i32) {
        let response = Response::Ok(shim_core::protocol::Reply::Exit { exit_code: code });
        for waiter in std::mem::take(&mut self.waiters) {
            self.server.reply(registry, waiter, &response);
        }
    }

    /// Leaves tether's state directory (the container was deleted through containerd).
    pub fn unregister(mut self) {
        self.server.flush_all_blocking();
        let _ = std::fs::remove_dir_all(self.layout.container_dir(&self.id));
    }
}

fn state_layout() -> StateLayout {
    let root = std::env::var_os("TETHER_STATE_DIR")
        .filter(|dir| !dir.is_empty())
        .unwrap_or_else(|| shim_core::DEFAULT_STATE_DIR.into());
    StateLayout::new(root)
}

/// Removes the entry of a container whose shim died (containerd's `delete`): only when the entry
/// is a containerd shim's (its state says so) and nothing answers on its socket.
pub fn forget(id: &str) {
    let layout = state_layout();
    let Ok(id) = id.parse::<ContainerId>() else {
        return;
    };
    let ours = layout.container_dir(&id).join(MARKER).exists();
    let answers = crate::sockpath::connect(&layout.control_socket(&id)).is_ok();
    if ours && !answers {
        let _ = std::fs::remove_dir_all(layout.container_dir(&id));
    }
}

/// The answer to requests that belong to containerd's clients.
pub fn refused(id: &str, what: &str) -> Response {
    Response::error(
        ErrorKind::BadRequest,
        format!("container {id} is managed by containerd: {what} it through containerd (ctr, nerdctl, crictl)"),
    )
}

impl crate::shim::Supervisor {
    /// One thing a tether client did.
    pub(crate) fn on_tether_client(&mut self, incoming: Incoming) {
        match incoming {
            Incoming::Request(client, Ok(request)) => {
                if let Some(response) = self.tether_request(client, request) {
                    self.reply_tether(client, &response);
                }
            }
            Incoming::Request(client, Err(response)) => self.reply_tether(client, &response),
            Incoming::Frame(..) => {}
            Incoming::Closed(client) => {
                if let Some(front) = &mut self.front {
                    front.waiters.retain(|w| *w != client);
                }
            }
        }
    }

    fn reply_tether(&mut self, client: Token, response: &Response) {
        if let Some(front) = &mut self.front {
            front.reply(self.poll.registry(), client, response);
        }
    }

    /// Answers a request of docs/protocol.md; None: later (`wait`).
    fn tether_request(
        &mut self,
        client: Token,
        request: shim_core::protocol::Request,
    ) -> Option<Response> {
        use shim_core::protocol::{Reply, Request};
        use shim_core::ProcessKey;
        let id = self.id.clone();
        let done = |result: shim_core::Result<_>| match result {
            Ok(_) => Response::Ok(Reply::Done {}),
            Err(e) => Response::from_error(e),
        };
        Some(match request {
            Request::State => match self.tether_state() {
                Some(state) => Response::Ok(Reply::State(Box::new(state))),
                None => Response::error(
                    ErrorKind::InvalidState,
                    format!("container {id} was deleted"),
                ),
            },
            Request::Wait => match self.tether_state().and_then(|s| s.exit) {
                Some(exit) => Response::Ok(Reply::Exit {
                    exit_code: exit.code,
                }),
                None => {
                    self.front.as_mut()?.waiters.push(client);
                    return None;
                }
            },
            Request::Kill { signal, all } => {
                done(self.kill(&ProcessKey::Init, signal.max(0) as u32, all))
            }
            Request::Pids => match self.pids() {
                Ok(pids) => Response::Ok(Reply::Pids {
                    pids: pids.into_iter().map(|(pid, _)| pid).collect(),
                }),
                Err(e) => Response::from_error(e),
            },
            Request::Pause => done(self.pause(true)),
            Request::Resume => done(self.pause(false)),
            Request::ReopenLog => Response::Ok(Reply::Done {}),
            Request::Delete { .. } => refused(&id, "delete"),
            Request::Exec(_) | Request::ExecState { .. } => refused(&id, "exec into"),
            Request::Attach => refused(&id, "attach to"),
        })
    }

    /// The container as `tether ps` shows it.
    pub(crate) fn tether_state(&self) -> Option<ContainerState> {
        use shim_core::lifecycle::Phase;
        let container = self.container.as_ref()?;
        let init = &container.init;
        let status = match init.phase() {
            Phase::Created => shim_core::Status::Created,
            Phase::Paused => shim_core::Status::Paused,
            Phase::Exited => shim_core::Status::Stopped,
            Phase::Running | Phase::Exiting => shim_core::Status::Running,
        };
        let log = init
            .paths
            .stdout
            .strip_prefix("file://")
            .unwrap_or_default();
        Some(ContainerState {
            id: self.id.parse().ok()?,
            status,
            pid: init.pid,
            daemon_pid: std::process::id() as i32,
            bundle: container.bundle.clone().into(),
            log_path: log.into(),
            // containerd's file:// logs are the output as it came.
            log_format: "raw".into(),
            runtime: if container.options.binary_name.is_empty() {
                "runc".into()
            } else {
                container.options.binary_name.clone().into()
            },
            runtime_root: Some(container.runc_root.clone()),
            created_at: container.created_at.clone(),
            exit: init.exit.map(|exit| {
                shim_core::ExitRecord::new(&exit, crate::time::rfc3339(exit.reaped_at))
            }),
            oom_killed: container.oom_killed,
        })
    }

    /// Keeps `state.json` current.
    pub(crate) fn refresh_front(&mut self) {
        let state = self.tether_state();
        if let (Some(front), Some(state)) = (&mut self.front, state) {
            front.save(state);
        }
    }
}
