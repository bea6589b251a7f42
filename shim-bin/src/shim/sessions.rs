//! Execs a door starts for clients of its own (`tether exec`), and what those clients and the
//! attached ones send: the rules are the supervisor's, a door only carries the bytes.
//!
//! An exec starts from the container's own process (read from config.json at the first exec, not
//! at start-up: parsing a whole runtime spec takes tens of KiB of stack, which would stay resident
//! for the daemon's life, and most containers are never exec'd into). A session's client gets the
//! exec's output as frames and its exit; once the client goes, the exec keeps running with its
//! stdin closed and its output read and dropped, so it never blocks.

use super::exec_process::build_process;
use super::{StdioPlan, Supervisor};
use mio::Token;
use oci_spec::runtime::Process;
use shim_core::frame::{self, FrameKind};
use shim_core::protocol::ExecRequest;
use shim_core::{Error, ExecId, ProcessKey, Result};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

/// What an exec takes from the container's config.json: its process and its root, read without
/// building the rest (mounts, namespaces, a seccomp profile of hundreds of rules), whose parsing
/// would leave heap and stack pages resident for the daemon's life.
#[derive(Debug, serde::Deserialize)]
struct ExecBase {
    #[serde(default)]
    process: Option<Process>,
    #[serde(default)]
    root: Option<oci_spec::runtime::Root>,
}

impl ExecBase {
    fn load(path: &std::path::Path) -> std::result::Result<ExecBase, String> {
        let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
        serde_json::from_reader(std::io::BufReader::new(file)).map_err(|e| e.to_string())
    }
}

/// The execs started for clients, and what they start from.
#[derive(Debug, Default)]
pub struct Sessions {
    serial: u64,
    /// The container's own process and its rootfs (where `exec -u NAME` looks).
    base: Option<(Process, Option<PathBuf>)>,
    /// The client each streamed exec's frames go to.
    clients: HashMap<ExecId, Token>,
}

impl Supervisor {
    /// Starts `request` in the container (`runc exec --detach`), streamed to `client` (None:
    /// detached); it is removed at its exit. Its exit is told only once its output is complete,
    /// or after the exec's output grace when an orphaned background child keeps a pipe open.
    pub fn start_session(
        &mut self,
        request: &ExecRequest,
        client: Option<Token>,
    ) -> Result<(ExecId, i32)> {
        let (base, rootfs) = self.exec_base()?;
        let process =
            build_process(base, request, rootfs.as_deref()).map_err(Error::bad_request)?;
        self.sessions.serial += 1;
        let exec_id = ExecId::new(format!("exec-{}", self.sessions.serial))
            .map_err(|e| Error::internal(e.to_string()))?;
        let plan = StdioPlan::Client {
            client,
            stdin: request.stdin,
            terminal: request.tty,
        };
        let key = ProcessKey::Exec(exec_id.clone());
        let started = self
            .add_exec(exec_id.clone(), process, plan)
            .and_then(|()| self.remove_exec_at_exit(&key))
            .and_then(|()| self.start(&key));
        let pid = match started {
            Ok(pid) => pid,
            Err(e) => {
                if let Ok(container) = self.container_mut() {
                    container.execs.remove(&exec_id);
                }
                return Err(e);
            }
        };
        if let Some((rows, cols)) = request.window {
            let _ = self.resize(&key, rows, cols);
        }
        if let Some(secs) = request.timeout_secs {
            let _ = self.set_deadline(&key, Duration::from_secs(secs));
        }
        if let Some(client) = client {
            self.sessions.clients.insert(exec_id.clone(), client);
        }
        self.diag.info(format_args!(
            "{exec_id} started: pid {pid}, {:?}",
            request.args
        ));
        Ok((exec_id, pid))
    }

    /// The container's own process and rootfs, read once.
    fn exec_base(&mut self) -> Result<(&Process, &Option<PathBuf>)> {
        if self.sessions.base.is_none() {
            let bundle = PathBuf::from(self.bundle()?);
            let path = bundle.join("config.json");
            let spec = ExecBase::load(&path)
                .map_err(|e| Error::internal(format!("exec: {}: {e}", path.display())))?;
            let rootfs = spec.root.as_ref().map(|root| bundle.join(root.path()));
            self.sessions.base = Some((spec.process.unwrap_or_default(), rootfs));
        }
        let (base, rootfs) = self.sessions.base.as_ref().expect("read above");
        Ok((base, rootfs))
    }

    /// The client an exec's frames and exit go to, taken: its exit was told.
    pub fn take_session_client(&mut self, exec_id: &ExecId) -> Option<Token> {
        self.sessions.clients.remove(exec_id)
    }

    /// The process a framed client talks to: the init for an attached one, its exec for a
    /// session's.
    pub fn client_process(&self, client: Token) -> Option<ProcessKey> {
        if self.attached().contains(client) {
            return Some(ProcessKey::Init);
        }
        self.sessions
            .clients
            .iter()
            .find(|(_, c)| **c == client)
            .map(|(id, _)| ProcessKey::Exec(id.clone()))
    }

    /// The clients that write to `key`'s input.
    pub fn input_clients(&self, key: &ProcessKey) -> Vec<Token> {
        match key {
            ProcessKey::Init => self.attached().clients().to_vec(),
            ProcessKey::Exec(id) => self.sessions.clients.get(id).copied().into_iter().collect(),
        }
    }

    /// A frame from a framed client: input, its end, or a terminal's new size. Returns the
    /// process whose input is full: its clients are not read until it drains
    /// ([`Supervisor::clients_with_input_room`]).
    pub fn client_frame(
        &mut self,
        client: Token,
        kind: FrameKind,
        payload: &[u8],
    ) -> Option<ProcessKey> {
        let key = self.client_process(client)?;
        let input = self.process(&key).ok().and_then(|p| p.input);
        match (kind, input) {
            (FrameKind::Stdin, Some(n))
                if !self.copier.client_input(self.poll.registry(), n, payload) =>
            {
                return Some(key);
            }
            (FrameKind::StdinEof, Some(n)) => self.copier.close_input(self.poll.registry(), n),
            (FrameKind::Resize, _) => {
                if let Some((rows, cols)) = frame::parse_resize(payload) {
                    let _ = self.resize(&key, rows, cols);
                }
            }
            _ => {}
        }
        None
    }

    /// The clients of processes that took their input: they may send more.
    pub fn clients_with_input_room(&self) -> Vec<Token> {
        let Some(container) = &self.container else {
            return Vec::new();
        };
        container
            .procs()
            .filter(|p| p.input.is_some_and(|n| self.copier.takes_input(n)))
            .flat_map(|p| self.input_clients(&p.key))
            .collect()
    }

    /// A framed client went away: it is detached, and an exec it streamed keeps running with
    /// its stdin closed and its output dropped.
    pub fn client_left(&mut self, client: Token) {
        let exec = self
            .sessions
            .clients
            .iter()
            .find(|(_, c)| **c == client)
            .map(|(id, _)| id.clone());
        self.detach_client(client);
        self.copier.forget_client(client);
        if let Some(exec_id) = exec {
            self.sessions.clients.remove(&exec_id);
            let key = ProcessKey::Exec(exec_id);
            if let Some(n) = self.process(&key).ok().and_then(|p| p.input) {
                self.close_relay(n);
            }
        }
    }
}
