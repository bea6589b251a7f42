//! The Task calls, answered by the core: what each does to the container and its processes, in
//! containerd's terms (its error kinds, statuses and events).

use super::core::{Container, Core, Proc};
use super::events::{timestamp, Event};
use super::mounts::{mount_rootfs, unmount_rootfs};
use super::options::{join_cgroup, RuntimeOptions};
use super::service::{status, Call};
use super::stdio::{self, Prepared, StdioPaths};
use crate::daemon::process::{receive_terminal, set_window, start_failure_code};
use crate::daemon::startup::read_pid;
use crate::daemon::ReaperWait;
use containerd_shim_protos::api::*;
use containerd_shim_protos::events::task as ev;
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::Message;
use containerd_shim_protos::shim::oci::ProcessDetails;
use containerd_shim_protos::ttrpc::{self, Code};
use shim_runc::{CreateOptions, DeleteOptions, ExecOptions, KillOptions};
use std::collections::HashMap;
use std::fs::File;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

type Result<T> = ttrpc::Result<T>;

/// A started process's relays: its outputs, its input, and its terminal.
type Connected = (Vec<usize>, Option<usize>, Option<File>);

fn not_found(what: impl std::fmt::Display) -> ttrpc::Error {
    status(Code::NOT_FOUND, format!("{what}: not found"))
}

fn runtime_error(e: shim_runc::Error) -> ttrpc::Error {
    let message = e.to_string();
    let lower = message.to_ascii_lowercase();
    // What containerd's own shim reports as "process already finished".
    if lower.contains("not running")
        || lower.contains("no such process")
        || lower.contains("process already finished")
    {
        return status(
            Code::NOT_FOUND,
            format!("process already finished: {message}"),
        );
    }
    status(Code::UNKNOWN, message)
}

impl Core {
    /// Answers one call.
    pub fn handle(&mut self, call: Call) {
        self.diag.debug(format_args!("call {}", call_name(&call)));
        match call {
            Call::State(r, a) => drop(a.send(self.state(r))),
            Call::Create(r, a) => drop(a.send(self.create(r))),
            Call::Start(r, a) => drop(a.send(self.start(r))),
            Call::Delete(r, a) => drop(a.send(self.delete(r))),
            Call::Pids(r, a) => drop(a.send(self.pids(r))),
            Call::Pause(r, a) => drop(a.send(self.pause_resume(&r.id, true))),
            Call::Resume(r, a) => drop(a.send(self.pause_resume(&r.id, false))),
            Call::Kill(r, a) => drop(a.send(self.kill(r))),
            Call::Exec(r, a) => drop(a.send(self.exec(r))),
            Call::ResizePty(r, a) => drop(a.send(self.resize(r))),
            Call::CloseIo(r, a) => drop(a.send(self.close_io(r))),
            Call::Update(r, a) => drop(a.send(self.update(r))),
            Call::Wait(r, a) => match self.proc_mut(&r.id, &r.exec_id) {
                Ok(proc) if proc.exit.is_some() => drop(a.send(Ok(proc.wait_response()))),
                Ok(proc) => proc.waiters.push(a),
                Err(e) => drop(a.send(Err(e))),
            },
            Call::Stats(r, a) => drop(a.send(self.stats(r))),
            Call::Connect(r, a) => drop(a.send(self.connect(r))),
            Call::Shutdown(r, a) => drop(a.send(self.shutdown(r))),
        }
    }

    fn container(&self, id: &str) -> Result<&Container> {
        match &self.container {
            Some(container) if id == self.id => Ok(container),
            _ => Err(not_found(format!("container {id}"))),
        }
    }

    fn container_mut(&mut self, id: &str) -> Result<&mut Container> {
        match &mut self.container {
            Some(container) if id == self.id => Ok(container),
            _ => Err(not_found(format!("container {id}"))),
        }
    }

    fn proc_mut(&mut self, id: &str, exec_id: &str) -> Result<&mut Proc> {
        let container = self.container_mut(id)?;
        if exec_id.is_empty() {
            return Ok(&mut container.init);
        }
        container
            .execs
            .get_mut(exec_id)
            .ok_or_else(|| not_found(format!("process {exec_id}")))
    }

    fn proc(&self, id: &str, exec_id: &str) -> Result<&Proc> {
        let container = self.container(id)?;
        if exec_id.is_empty() {
            return Ok(&container.init);
        }
        container
            .execs
            .get(exec_id)
            .ok_or_else(|| not_found(format!("process {exec_id}")))
    }

    fn state(&self, r: StateRequest) -> Result<StateResponse> {
        let container = self.container(&r.id)?;
        let proc = self.proc(&r.id, &r.exec_id)?;
        let mut response = StateResponse::new();
        response.id = if r.exec_id.is_empty() {
            r.id.clone()
        } else {
            r.exec_id.clone()
        };
        response.exec_id = r.exec_id.clone();
        response.bundle = container.bundle.clone();
        response.pid = proc.pid as u32;
        response.status = proc.status.into();
        response.stdin = proc.paths.stdin.clone();
        response.stdout = proc.paths.stdout.clone();
        response.stderr = proc.paths.stderr.clone();
        response.terminal = proc.paths.terminal;
        if let Some((code, at)) = proc.exit {
            response.exit_status = code;
            response.exited_at = Some(timestamp(at)).into();
        }
        Ok(response)
    }

    /// A short socket path for a runtime's console (bundle paths can exceed a socket's 108 bytes).
    fn console_path(&mut self) -> PathBuf {
        self.next_pid_file += 1;
        self.socket_dir.join(format!(
            "{}-{}.console",
            self.socket_stem, self.next_pid_file
        ))
    }

    /// Connects a prepared process's stdio to relays once it runs: pipes, or the terminal the
    /// runtime sent. Returns the relays and the terminal.
    fn connect_stdio(
        &mut self,
        prepared: &mut Prepared,
        name: &str,
    ) -> std::result::Result<Connected, String> {
        let mut outputs = Vec::new();
        let mut input = None;
        let mut terminal = None;
        if let Some((listener, path)) = prepared.console.take() {
            let received = receive_terminal(&listener);
            let _ = std::fs::remove_file(path);
            let master = File::from(received.map_err(|e| format!("terminal: {e}"))?);
            let reader = OwnedFd::from(master.try_clone().map_err(|e| e.to_string())?);
            let n = self
                .add_output(
                    (reader, prepared.terminal_stdout.take()),
                    format!("{name} terminal"),
                )
                .map_err(|e| e.to_string())?;
            outputs.push(n);
            if let Some(fifo) = prepared.terminal_stdin.take() {
                let writer = master.try_clone().map_err(|e| e.to_string())?;
                input = Some(self.add_input((fifo, writer)).map_err(|e| e.to_string())?);
            }
            terminal = Some(master);
        }
        for (stream, output) in ["stdout", "stderr"].iter().zip(prepared.outputs.drain(..)) {
            outputs.push(
                self.add_output(output, format!("{name} {stream}"))
                    .map_err(|e| e.to_string())?,
            );
        }
        if let Some(pair) = prepared.input.take() {
            input = Some(self.add_input(pair).map_err(|e| e.to_string())?);
        }
        Ok((outputs, input, terminal))
    }

    fn create(&mut self, r: CreateTaskRequest) -> Result<CreateTaskResponse> {
        if self.container.is_some() {
            return Err(status(
                Code::ALREADY_EXISTS,
                format!("container {} already exists", r.id),
            ));
        }
        if r.id != self.id {
            return Err(status(
                Code::INVALID_ARGUMENT,
                format!("this shim serves container {}, not {}", self.id, r.id),
            ));
        }
        if !r.checkpoint.is_empty() {
            return Err(status(
                Code::UNIMPLEMENTED,
                "restoring from a checkpoint is not implemented by tether",
            ));
        }
        let options =
            RuntimeOptions::from_request(r.options.as_ref(), self.default_options.clone())
                .map_err(|e| status(Code::INVALID_ARGUMENT, e))?;
        if let Some(foreign) = RuntimeOptions::foreign_type(r.options.as_ref()) {
            self.diag.info(format_args!(
                "runtime options of type {foreign} carry nothing tether uses; runc defaults apply"
            ));
        }
        if !options.shim_cgroup.is_empty() {
            if let Err(e) = join_cgroup(&options.shim_cgroup) {
                self.diag.warn(format_args!("{e}"));
            }
        }
        let bundle = if r.bundle.is_empty() {
            self.bundle_dir.clone()
        } else {
            PathBuf::from(&r.bundle)
        };
        if let Err(e) = options.save(&bundle) {
            self.diag
                .warn(format_args!("keep runtime options in the bundle: {e}"));
        }
        let runc = options.runc(&self.namespace, &bundle);
        let rootfs = bundle.join("rootfs");
        mount_rootfs(&r.rootfs, &rootfs).map_err(|e| status(Code::UNKNOWN, e))?;
        let paths = StdioPaths {
            stdin: r.stdin.clone(),
            stdout: r.stdout.clone(),
            stderr: r.stderr.clone(),
            terminal: r.terminal,
        };
        let io_ids = (options.io_uid != 0 || options.io_gid != 0)
            .then_some((options.io_uid, options.io_gid));
        let console = self.console_path();
        let owner = stdio::Owner {
            container_id: &self.id,
            namespace: &self.namespace,
            io_ids,
        };
        let undo_mounts = |message: String| {
            if !r.rootfs.is_empty() {
                unmount_rootfs(&rootfs);
            }
            status(Code::UNKNOWN, message)
        };
        let mut prepared =
            stdio::prepare(&paths, &console, owner).map_err(|e| undo_mounts(e.to_string()))?;
        let pid_file = bundle.join("init.pid");
        let mut create = CreateOptions::new(&bundle)
            .pid_file(&pid_file)
            .no_pivot(options.no_pivot_root)
            .no_new_keyring(options.no_new_keyring);
        if paths.terminal {
            create = create.console_socket(&console);
        }
        let runtime_io = std::mem::replace(
            &mut prepared.runtime,
            shim_runc::ProcessIo::new(
                std::process::Stdio::null(),
                std::process::Stdio::null(),
                std::process::Stdio::null(),
            ),
        );
        self.reap_needed = true;
        let created = runc.create(
            &self.id,
            &create,
            runtime_io,
            &mut ReaperWait(&mut self.reaper),
        );
        let undo_container = |core: &mut Core, message: String| {
            let _ = runc.delete(
                &core.id,
                DeleteOptions { force: true },
                &mut ReaperWait(&mut core.reaper),
            );
            undo_mounts(message)
        };
        if let Err(e) = created {
            if let Some((_, path)) = &prepared.console {
                let _ = std::fs::remove_file(path);
            }
            return Err(undo_container(self, e.to_string()));
        }
        let pid = match read_pid(&pid_file) {
            Ok(pid) => pid,
            Err(message) => return Err(undo_container(self, message)),
        };
        let (outputs, input, terminal) = match self.connect_stdio(&mut prepared, "init") {
            Ok(connected) => connected,
            Err(message) => return Err(undo_container(self, message)),
        };
        let mut init = Proc::new("", paths.clone());
        init.pid = pid;
        init.outputs = outputs;
        init.input = input;
        init.terminal = terminal;
        init.pending_exit = self.watch(pid, true);
        let oom = self.register_oom(pid);
        let runc_root = options.runc_root(&self.namespace);
        self.container = Some(Container {
            bundle: bundle.to_string_lossy().into_owned(),
            rootfs_mounted: !r.rootfs.is_empty(),
            runc,
            options,
            init,
            execs: HashMap::new(),
            oom,
            runc_root,
            created_at: crate::time::now(),
        });
        match super::front::TetherFront::register(&self.id, self.poll.registry()) {
            Ok(front) => self.front = Some(front),
            Err(e) => self.diag.info(format_args!("{e}")),
        }
        self.diag.info(format_args!(
            "container {} created, init pid {pid}",
            self.id
        ));
        self.events.publish(Event::Create(ev::TaskCreate {
            container_id: self.id.clone(),
            bundle: bundle.to_string_lossy().into_owned(),
            rootfs: r.rootfs,
            io: Some(ev::TaskIO {
                stdin: paths.stdin,
                stdout: paths.stdout,
                stderr: paths.stderr,
                terminal: paths.terminal,
                ..Default::default()
            })
            .into(),
            checkpoint: r.checkpoint,
            pid: pid as u32,
            ..Default::default()
        }));
        Ok(CreateTaskResponse {
            pid: pid as u32,
            ..Default::default()
        })
    }

    fn start(&mut self, r: StartRequest) -> Result<StartResponse> {
        if r.exec_id.is_empty() {
            return self.start_init(&r.id);
        }
        self.start_exec(&r.id, &r.exec_id)
    }

    fn start_init(&mut self, id: &str) -> Result<StartResponse> {
        let container = self.container(id)?;
        if container.init.status != Status::CREATED {
            return Err(status(
                Code::FAILED_PRECONDITION,
                format!("container {id} was started already"),
            ));
        }
        let runc = container.runc.clone();
        self.reap_needed = true;
        runc.start(id, &mut ReaperWait(&mut self.reaper))
            .map_err(runtime_error)?;
        let container = self.container_mut(id)?;
        container.init.status = Status::RUNNING;
        let pid = container.init.pid;
        self.events.publish(Event::Start(ev::TaskStart {
            container_id: id.to_owned(),
            pid: pid as u32,
            ..Default::default()
        }));
        Ok(StartResponse {
            pid: pid as u32,
            ..Default::default()
        })
    }

    fn start_exec(&mut self, id: &str, exec_id: &str) -> Result<StartResponse> {
        let container = self.container(id)?;
        if !container.init.is_running() {
            return Err(status(
                Code::FAILED_PRECONDITION,
                format!("container {id} is not running"),
            ));
        }
        let runc = container.runc.clone();
        let io_ids = (container.options.io_uid != 0 || container.options.io_gid != 0)
            .then_some((container.options.io_uid, container.options.io_gid));
        let bundle = PathBuf::from(&container.bundle);
        let proc = self.proc(id, exec_id)?;
        if proc.status != Status::CREATED {
            return Err(status(
                Code::FAILED_PRECONDITION,
                format!("process {exec_id} was started already"),
            ));
        }
        let paths = proc.paths.clone();
        let spec = proc.spec.clone().expect("a created exec has its process");
        let console = self.console_path();
        let owner = stdio::Owner {
            container_id: &self.id,
            namespace: &self.namespace,
            io_ids,
        };
        let mut prepared = stdio::prepare(&paths, &console, owner)
            .map_err(|e| status(Code::UNKNOWN, e.to_string()))?;
        let pid_file = bundle.join(format!("exec-{}.pid", self.next_pid_file));
        let options = ExecOptions {
            detach: true,
            pid_file: Some(pid_file.clone()),
            console_socket: paths.terminal.then(|| console.clone()),
            tty: paths.terminal,
        };
        let runtime_io = std::mem::replace(
            &mut prepared.runtime,
            shim_runc::ProcessIo::new(
                std::process::Stdio::null(),
                std::process::Stdio::null(),
                std::process::Stdio::null(),
            ),
        );
        self.reap_needed = true;
        let ran = runc.exec(
            id,
            &spec,
            &options,
            runtime_io,
            &mut ReaperWait(&mut self.reaper),
        );
        let pid = ran
            .map_err(|e| e.to_string())
            .and_then(|()| read_pid(&pid_file));
        let _ = std::fs::remove_file(&pid_file);
        let pid = match pid {
            Ok(pid) => pid,
            Err(message) => {
                let _ = std::fs::remove_file(&console);
                // It never ran: it exited, as far as anyone waiting is concerned.
                let proc = self.proc_mut(id, exec_id)?;
                proc.status = Status::STOPPED;
                proc.exit = Some((start_failure_code(&message) as u32, SystemTime::now()));
                let response = proc.wait_response();
                for waiter in proc.waiters.drain(..) {
                    let _ = waiter.send(Ok(response.clone()));
                }
                return Err(status(Code::UNKNOWN, message));
            }
        };
        let connected = self.connect_stdio(&mut prepared, &format!("exec {exec_id}"));
        let (outputs, input, terminal) =
            connected.map_err(|message| status(Code::UNKNOWN, message))?;
        let pending_exit = self.watch(pid, false);
        let proc = self.proc_mut(id, exec_id)?;
        proc.pid = pid;
        proc.pending_exit = pending_exit;
        proc.status = Status::RUNNING;
        proc.outputs = outputs;
        proc.input = input;
        proc.terminal = terminal;
        proc.spec = None;
        self.events.publish(Event::ExecStarted(ev::TaskExecStarted {
            container_id: id.to_owned(),
            exec_id: exec_id.to_owned(),
            pid: pid as u32,
            ..Default::default()
        }));
        Ok(StartResponse {
            pid: pid as u32,
            ..Default::default()
        })
    }

    fn exec(&mut self, r: ExecProcessRequest) -> Result<Empty> {
        let container = self.container(&r.id)?;
        if r.exec_id.is_empty() {
            return Err(status(Code::INVALID_ARGUMENT, "an exec needs an id"));
        }
        if container.execs.contains_key(&r.exec_id) {
            return Err(status(
                Code::ALREADY_EXISTS,
                format!("id {}: already exists", r.exec_id),
            ));
        }
        if !container.init.is_running() {
            return Err(status(
                Code::FAILED_PRECONDITION,
                format!("container {} is not running", r.id),
            ));
        }
        let spec_bytes = r
            .spec
            .as_ref()
            .map(|any| any.value.as_slice())
            .unwrap_or_default();
        let spec: oci_spec::runtime::Process = serde_json::from_slice(spec_bytes)
            .map_err(|e| status(Code::INVALID_ARGUMENT, format!("exec process spec: {e}")))?;
        let mut proc = Proc::new(
            &r.exec_id,
            StdioPaths {
                stdin: r.stdin,
                stdout: r.stdout,
                stderr: r.stderr,
                terminal: r.terminal,
            },
        );
        proc.spec = Some(spec);
        let container = self.container_mut(&r.id)?;
        container.execs.insert(r.exec_id.clone(), proc);
        self.events.publish(Event::ExecAdded(ev::TaskExecAdded {
            container_id: r.id,
            exec_id: r.exec_id,
            ..Default::default()
        }));
        Ok(Empty::new())
    }

    pub(super) fn kill(&mut self, r: KillRequest) -> Result<Empty> {
        let signal = i32::try_from(r.signal)
            .ok()
            .filter(|s| (1..=64).contains(s))
            .ok_or_else(|| {
                status(
                    Code::INVALID_ARGUMENT,
                    format!("signal {} is not a signal", r.signal),
                )
            })?;
        let container = self.container(&r.id)?;
        let proc = self.proc(&r.id, &r.exec_id)?;
        if proc.exit.is_some() || proc.pending_exit.is_some() {
            return Err(status(Code::NOT_FOUND, "process already finished"));
        }
        if !r.exec_id.is_empty() {
            if proc.status == Status::CREATED {
                return Err(status(
                    Code::FAILED_PRECONDITION,
                    format!("process {} was not started", r.exec_id),
                ));
            }
            // SAFETY: kill(2) with a pid this shim reaps (so it cannot have been reused yet).
            let result = unsafe { nix::libc::kill(proc.pid, signal) };
            if result != 0 {
                return Err(status(Code::NOT_FOUND, "process already finished"));
            }
            return Ok(Empty::new());
        }
        let runc = container.runc.clone();
        self.reap_needed = true;
        runc.kill(
            &r.id,
            KillOptions::new(signal).all(r.all),
            &mut ReaperWait(&mut self.reaper),
        )
        .map_err(runtime_error)?;
        Ok(Empty::new())
    }

    fn delete(&mut self, r: DeleteRequest) -> Result<DeleteResponse> {
        if !r.exec_id.is_empty() {
            return self.delete_exec(&r.id, &r.exec_id);
        }
        let container = self.container(&r.id)?;
        if container.init.is_running() && container.init.pending_exit.is_none() {
            return Err(status(
                Code::FAILED_PRECONDITION,
                format!("container {} is running; kill it first", r.id),
            ));
        }
        if container.init.pending_exit.is_some() {
            // Exited, its output still draining: the exit is recorded (and published) now.
            self.record_exit("");
        }
        let container = self.container(&r.id)?;
        let runc = container.runc.clone();
        let force = container.init.exit.is_none();
        self.reap_needed = true;
        if let Err(e) = runc.delete(
            &r.id,
            DeleteOptions { force },
            &mut ReaperWait(&mut self.reaper),
        ) {
            if !e.to_string().contains("does not exist") {
                return Err(status(Code::UNKNOWN, e.to_string()));
            }
        }
        let container = self.container.take().expect("checked above");
        if let Some(front) = self.front.take() {
            front.unregister();
        }
        let mut relays: Vec<usize> = container.init.outputs.clone();
        relays.extend(container.init.input);
        for exec in container.execs.values() {
            relays.extend(exec.outputs.iter().copied());
            relays.extend(exec.input);
        }
        for n in relays {
            self.close_relay(n);
        }
        if container.rootfs_mounted {
            unmount_rootfs(&Path::new(&container.bundle).join("rootfs"));
        }
        let (code, at) = container.init.exit.unwrap_or((128 + 9, SystemTime::now()));
        for waiter in container.init.waiters {
            let mut response = WaitResponse::new();
            response.exit_status = code;
            response.exited_at = Some(timestamp(at)).into();
            let _ = waiter.send(Ok(response));
        }
        self.events.publish(Event::Delete(ev::TaskDelete {
            container_id: r.id.clone(),
            id: r.id.clone(),
            pid: container.init.pid as u32,
            exit_status: code,
            exited_at: Some(timestamp(at)).into(),
            ..Default::default()
        }));
        self.diag.info(format_args!("container {} deleted", r.id));
        Ok(DeleteResponse {
            pid: container.init.pid as u32,
            exit_status: code,
            exited_at: Some(timestamp(at)).into(),
            ..Default::default()
        })
    }

    fn delete_exec(&mut self, id: &str, exec_id: &str) -> Result<DeleteResponse> {
        let proc = self.proc(id, exec_id)?;
        if proc.is_running() {
            return Err(status(
                Code::FAILED_PRECONDITION,
                format!("process {exec_id} is running; kill it first"),
            ));
        }
        let container = self.container_mut(id)?;
        let proc = container.execs.remove(exec_id).expect("checked above");
        for n in proc.outputs.iter().copied().chain(proc.input) {
            self.close_relay(n);
        }
        let (code, at) = proc.exit.unwrap_or((0, SystemTime::now()));
        Ok(DeleteResponse {
            pid: proc.pid as u32,
            exit_status: code,
            exited_at: Some(timestamp(at)).into(),
            ..Default::default()
        })
    }

    pub(super) fn pids(&mut self, r: PidsRequest) -> Result<PidsResponse> {
        let container = self.container(&r.id)?;
        let runc = container.runc.clone();
        let exec_of: HashMap<u32, String> = container
            .execs
            .values()
            .filter(|p| p.pid > 0)
            .map(|p| (p.pid as u32, p.exec_id.clone()))
            .collect();
        self.reap_needed = true;
        let pids = runc
            .ps(&r.id, &mut ReaperWait(&mut self.reaper))
            .map_err(runtime_error)?;
        let processes = pids
            .into_iter()
            .map(|pid| {
                let mut info = ProcessInfo::new();
                info.pid = pid as u32;
                if let Some(exec_id) = exec_of.get(&(pid as u32)) {
                    let details = ProcessDetails {
                        exec_id: exec_id.clone(),
                        ..Default::default()
                    };
                    let mut any = Any::new();
                    any.type_url = "containerd.runc.v1.ProcessDetails".into();
                    any.value = details.write_to_bytes().unwrap_or_default();
                    info.info = Some(any).into();
                }
                info
            })
            .collect();
        Ok(PidsResponse {
            processes,
            ..Default::default()
        })
    }

    pub(super) fn pause_resume(&mut self, id: &str, pause: bool) -> Result<Empty> {
        let container = self.container(id)?;
        let expected = if pause {
            Status::RUNNING
        } else {
            Status::PAUSED
        };
        if container.init.status != expected || container.init.exit.is_some() {
            return Err(status(
                Code::FAILED_PRECONDITION,
                format!(
                    "container {id} is not {}",
                    if pause { "running" } else { "paused" }
                ),
            ));
        }
        let runc = container.runc.clone();
        self.reap_needed = true;
        let mut waiter = ReaperWait(&mut self.reaper);
        if pause {
            runc.pause(id, &mut waiter).map_err(runtime_error)?;
        } else {
            runc.resume(id, &mut waiter).map_err(runtime_error)?;
        }
        let container = self.container_mut(id)?;
        if container.init.exit.is_none() {
            container.init.status = if pause {
                Status::PAUSED
            } else {
                Status::RUNNING
            };
        }
        if pause {
            self.events.publish(Event::Paused(ev::TaskPaused {
                container_id: id.to_owned(),
                ..Default::default()
            }));
        } else {
            self.events.publish(Event::Resumed(ev::TaskResumed {
                container_id: id.to_owned(),
                ..Default::default()
            }));
        }
        Ok(Empty::new())
    }

    fn resize(&mut self, r: ResizePtyRequest) -> Result<Empty> {
        let rows = u16::try_from(r.height).unwrap_or(u16::MAX);
        let cols = u16::try_from(r.width).unwrap_or(u16::MAX);
        let proc = self.proc(&r.id, &r.exec_id)?;
        if let Some(terminal) = &proc.terminal {
            set_window(terminal, rows, cols);
        }
        Ok(Empty::new())
    }

    fn close_io(&mut self, r: CloseIORequest) -> Result<Empty> {
        let proc = self.proc(&r.id, &r.exec_id)?;
        if let (true, Some(n)) = (r.stdin, proc.input) {
            self.close_input(n);
        }
        Ok(Empty::new())
    }

    fn update(&mut self, r: UpdateTaskRequest) -> Result<Empty> {
        let container = self.container(&r.id)?;
        let bytes = r
            .resources
            .as_ref()
            .map(|any| any.value.as_slice())
            .unwrap_or_default();
        let resources: oci_spec::runtime::LinuxResources = serde_json::from_slice(bytes)
            .map_err(|e| status(Code::INVALID_ARGUMENT, format!("resources: {e}")))?;
        let runc = container.runc.clone();
        self.reap_needed = true;
        runc.update(&r.id, &resources, &mut ReaperWait(&mut self.reaper))
            .map_err(runtime_error)?;
        Ok(Empty::new())
    }

    fn stats(&mut self, r: StatsRequest) -> Result<StatsResponse> {
        use containerd_shim_protos::cgroups::metrics::{
            CPUStat, CPUUsage, MemoryEntry, MemoryStat, Metrics, PidsStat,
        };
        let container = self.container(&r.id)?;
        let runc = container.runc.clone();
        self.reap_needed = true;
        let stats = runc
            .stats(&r.id, &mut ReaperWait(&mut self.reaper))
            .map_err(runtime_error)?;
        let per_cpu = stats.raw["cpu"]["usage"]["percpu"]
            .as_array()
            .map(|cpus| cpus.iter().filter_map(|v| v.as_u64()).collect())
            .unwrap_or_default();
        let metrics = Metrics {
            cpu: Some(CPUStat {
                usage: Some(CPUUsage {
                    total: stats.cpu.total,
                    kernel: stats.cpu.kernel,
                    user: stats.cpu.user,
                    per_cpu,
                    ..Default::default()
                })
                .into(),
                ..Default::default()
            })
            .into(),
            memory: Some(MemoryStat {
                usage: Some(MemoryEntry {
                    usage: stats.memory.usage,
                    limit: stats.memory.limit,
                    max: stats.memory.max,
                    failcnt: stats.memory.failcnt,
                    ..Default::default()
                })
                .into(),
                ..Default::default()
            })
            .into(),
            pids: Some(PidsStat {
                current: stats.pids.current,
                limit: stats.pids.limit,
                ..Default::default()
            })
            .into(),
            ..Default::default()
        };
        let mut any = Any::new();
        any.type_url = "io.containerd.cgroups.v1.Metrics".into();
        any.value = metrics
            .write_to_bytes()
            .map_err(|e| status(Code::INTERNAL, e.to_string()))?;
        Ok(StatsResponse {
            stats: Some(any).into(),
            ..Default::default()
        })
    }

    fn connect(&self, _: ConnectRequest) -> Result<ConnectResponse> {
        Ok(ConnectResponse {
            shim_pid: std::process::id(),
            task_pid: self
                .container
                .as_ref()
                .map(|c| c.init.pid as u32)
                .unwrap_or(0),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            ..Default::default()
        })
    }

    fn shutdown(&mut self, r: ShutdownRequest) -> Result<Empty> {
        // A shim with a container stays until the container is deleted (containerd asks again).
        if self.container.is_some() && !r.now {
            return Ok(Empty::new());
        }
        self.done = true;
        Ok(Empty::new())
    }
}

fn call_name(call: &Call) -> &'static str {
    match call {
        Call::State(..) => "State",
        Call::Create(..) => "Create",
        Call::Start(..) => "Start",
        Call::Delete(..) => "Delete",
        Call::Pids(..) => "Pids",
        Call::Pause(..) => "Pause",
        Call::Resume(..) => "Resume",
        Call::Kill(..) => "Kill",
        Call::Exec(..) => "Exec",
        Call::ResizePty(..) => "ResizePty",
        Call::CloseIo(..) => "CloseIO",
        Call::Update(..) => "Update",
        Call::Wait(..) => "Wait",
        Call::Stats(..) => "Stats",
        Call::Connect(..) => "Connect",
        Call::Shutdown(..) => "Shutdown",
    }
}
