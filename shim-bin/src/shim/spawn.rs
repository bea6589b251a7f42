//! Making and starting processes: Create (the rootfs, the stdio, `runc create`), Start (`runc
//! start`, or `runc exec --detach` for an exec) and Exec (an exec's process, kept until its Start).

use super::mounts::{mount_rootfs, unmount_rootfs};
use super::ops::process_key;
use super::runtime::{join_cgroup, RuntimeOptions};
use super::stdio::{self, Prepared, StdioPaths};
use super::{Container, Core, Proc};
use crate::daemon::startup::read_pid;
use crate::daemon::ReaperWait;
use crate::front::ttrpc::events::Event;
use crate::sys::receive_terminal;
use containerd_shim_protos::api::*;
use containerd_shim_protos::events::task as ev;
use shim_core::lifecycle;
use shim_core::{Error, Exit, ExitStatus, ProcessKey, Result};
use shim_runc::{CreateOptions, DeleteOptions, ExecOptions};
use std::collections::HashMap;
use std::fs::File;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// A started process's relays: its outputs, its input, and its terminal.
type Connected = (Vec<usize>, Option<usize>, Option<File>);

/// Exec processes a container may have at once, started or not (each is kept until deleted).
const MAX_EXECS: usize = 4096;

impl Core {
    /// A short socket path for a runtime's console (bundle paths can exceed a socket's 108 bytes).
    fn console_path(&mut self) -> PathBuf {
        self.scratch_serial += 1;
        self.socket_dir.join(format!(
            "{}-{}.console",
            self.socket_stem, self.scratch_serial
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
                    "terminal",
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
                self.add_output(output, format!("{name} {stream}"), stream)
                    .map_err(|e| e.to_string())?,
            );
        }
        if let Some(pair) = prepared.input.take() {
            input = Some(self.add_input(pair).map_err(|e| e.to_string())?);
        }
        Ok((outputs, input, terminal))
    }

    pub(crate) fn create(&mut self, r: CreateTaskRequest) -> Result<CreateTaskResponse> {
        if self.container.is_some() {
            return Err(Error::already_exists(format!(
                "container {} already exists",
                r.id
            )));
        }
        if r.id != self.id {
            return Err(Error::bad_request(format!(
                "this shim serves container {}, not {}",
                self.id, r.id
            )));
        }
        if !r.checkpoint.is_empty() {
            return Err(Error::unsupported(
                "restoring from a checkpoint is not implemented by tether",
            ));
        }
        let options =
            RuntimeOptions::from_request(r.options.as_ref(), self.default_options.clone())
                .map_err(Error::bad_request)?;
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
        mount_rootfs(&r.rootfs, &rootfs).map_err(Error::runtime)?;
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
            Error::runtime(message)
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
        let mut init = Proc::new(ProcessKey::Init, paths.clone());
        init.pid = pid;
        init.outputs = outputs;
        init.input = input;
        init.terminal = terminal;
        init.pending_exit = self.watch(pid, &ProcessKey::Init);
        let oom = self.register_oom(pid);
        let runc_root = options.runc_root(&self.namespace);
        self.container = Some(Container {
            bundle: bundle.to_string_lossy().into_owned(),
            rootfs_mounted: !r.rootfs.is_empty(),
            runc,
            options,
            init,
            execs: HashMap::new(),
            shares_pid_namespace: shares_pid_namespace(&bundle),
            cgroup: super::cgroup::Cgroup::of_process(pid)
                .map_err(|e| {
                    self.diag
                        .info(format_args!("stats through the runtime: {e}"))
                })
                .ok(),
            oom,
            oom_killed: false,
            runc_root,
            created_at: crate::time::now(),
        });
        match crate::front::control::TetherFront::register(&self.id, self.poll.registry()) {
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

    pub(crate) fn start(&mut self, r: StartRequest) -> Result<StartResponse> {
        if r.exec_id.is_empty() {
            return self.start_init(&r.id);
        }
        self.start_exec(&r.id, &r.exec_id)
    }

    fn start_init(&mut self, id: &str) -> Result<StartResponse> {
        let container = self.container(id)?;
        lifecycle::check_start(&ProcessKey::Init, container.init.phase())
            .map_err(|e| e.context(format!("container {id}")))?;
        let runc = container.runc.clone();
        self.reap_needed = true;
        runc.start(id, &mut ReaperWait(&mut self.reaper))?;
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
        lifecycle::check_exec(container.init.phase())
            .map_err(|e| e.context(format!("container {id}")))?;
        let runc = container.runc.clone();
        let io_ids = (container.options.io_uid != 0 || container.options.io_gid != 0)
            .then_some((container.options.io_uid, container.options.io_gid));
        let bundle = PathBuf::from(&container.bundle);
        let proc = self.proc(id, exec_id)?;
        lifecycle::check_start(&proc.key, proc.phase())?;
        let key = proc.key.clone();
        let paths = proc.paths.clone();
        let spec = proc.spec.clone().expect("a created exec has its process");
        let console = self.console_path();
        let owner = stdio::Owner {
            container_id: &self.id,
            namespace: &self.namespace,
            io_ids,
        };
        let mut prepared =
            stdio::prepare(&paths, &console, owner).map_err(|e| Error::runtime(e.to_string()))?;
        let pid_file = bundle.join(format!("exec-{}.pid", self.scratch_serial));
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
            .map_err(|e| e.as_start_failure())
            .and_then(|()| read_pid(&pid_file).map_err(Error::runtime));
        let _ = std::fs::remove_file(&pid_file);
        let pid = match pid {
            Ok(pid) => pid,
            Err(error) => {
                let _ = std::fs::remove_file(&console);
                // It never ran: it exited, as far as anyone waiting is concerned.
                let code = match error.kind {
                    shim_core::ErrorKind::Runtime {
                        start_failure: Some(code),
                    } => code,
                    _ => 126,
                };
                let proc = self.proc_mut(id, exec_id)?;
                proc.exited(Exit {
                    pid: 0,
                    status: ExitStatus::Exited(code),
                    reaped_at: SystemTime::now(),
                });
                return Err(error);
            }
        };
        let connected = self.connect_stdio(&mut prepared, &format!("exec {exec_id}"));
        let (outputs, input, terminal) = connected.map_err(Error::runtime)?;
        let pending_exit = self.watch(pid, &key);
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

    pub(crate) fn exec(&mut self, r: ExecProcessRequest) -> Result<Empty> {
        let container = self.container(&r.id)?;
        let ProcessKey::Exec(exec_id) = process_key(&r.exec_id)? else {
            return Err(Error::bad_request("an exec needs an id"));
        };
        if container.execs.len() >= MAX_EXECS {
            return Err(Error::exhausted(format!(
                "container {} has {MAX_EXECS} execs: delete some first",
                r.id
            )));
        }
        if container.execs.contains_key(&exec_id) {
            return Err(Error::already_exists(format!(
                "id {exec_id}: already exists"
            )));
        }
        lifecycle::check_exec(container.init.phase())
            .map_err(|e| e.context(format!("container {}", r.id)))?;
        let spec_bytes = r
            .spec
            .as_ref()
            .map(|any| any.value.as_slice())
            .unwrap_or_default();
        let spec: oci_spec::runtime::Process = serde_json::from_slice(spec_bytes)
            .map_err(|e| Error::bad_request(format!("exec process spec: {e}")))?;
        let mut proc = Proc::new(
            ProcessKey::Exec(exec_id.clone()),
            StdioPaths {
                stdin: r.stdin,
                stdout: r.stdout,
                stderr: r.stderr,
                terminal: r.terminal,
            },
        );
        proc.spec = Some(spec);
        let container = self.container_mut(&r.id)?;
        container.execs.insert(exec_id, proc);
        self.events.publish(Event::ExecAdded(ev::TaskExecAdded {
            container_id: r.id,
            exec_id: r.exec_id,
            ..Default::default()
        }));
        Ok(Empty::new())
    }
}

/// Whether the container has no PID namespace of its own (none in its spec, or one it joins by
/// path, as a pod's containers with shareProcessNamespace do): its init's exit then ends nothing
/// else, and the shim must kill the rest itself. An unreadable spec counts as sharing, which only
/// costs a `kill --all` that finds nothing.
fn shares_pid_namespace(bundle: &Path) -> bool {
    let Ok(spec) = oci_spec::runtime::Spec::load(bundle.join("config.json")) else {
        return true;
    };
    let own = spec
        .linux()
        .as_ref()
        .and_then(|linux| linux.namespaces().as_ref())
        .is_some_and(|namespaces| {
            namespaces.iter().any(|ns| {
                ns.typ() == oci_spec::runtime::LinuxNamespaceType::Pid && ns.path().is_none()
            })
        });
    !own
}
