//! Making and starting processes: Create (the rootfs, the stdio, `runc create`), Start (`runc
//! start`, or `runc exec --detach` for an exec) and Exec (an exec's process, kept until its Start).

use super::mounts::{mount_rootfs, unmount_rootfs};
use super::runtime::{join_cgroup, RuntimeOptions};
use super::stdio::{self, Prepared};
use super::{Container, Proc, Supervisor};
use crate::daemon::startup::read_pid;
use crate::daemon::ReaperWait;
use crate::sys::receive_terminal;
use shim_core::lifecycle::{self, Phase};
use shim_core::{
    Error, Event, ExecId, Exit, ExitStatus, ProcessKey, Result, RootfsMount, StdioPaths,
};
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

/// What a Create asks for.
#[derive(Debug, Clone, Default)]
pub struct CreateSpec {
    /// The bundle; empty: the directory the shim runs in.
    pub bundle: String,
    /// Mounts for the bundle's `rootfs` (none: it is there already).
    pub rootfs: Vec<RootfsMount>,
    pub stdio: StdioPaths,
    /// The runtime options in force.
    pub options: RuntimeOptions,
}

impl Supervisor {
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

    /// Creates the container (`runc create`): its rootfs mounted, its stdio relayed. Returns the
    /// init's pid.
    pub fn create(&mut self, spec: CreateSpec) -> Result<i32> {
        if self.container.is_some() {
            return Err(Error::already_exists(format!(
                "container {} already exists",
                self.id
            )));
        }
        let CreateSpec {
            bundle,
            rootfs: rootfs_mounts,
            stdio: paths,
            options,
        } = spec;
        if !options.shim_cgroup.is_empty() {
            if let Err(e) = join_cgroup(&options.shim_cgroup) {
                self.diag.warn(format_args!("{e}"));
            }
        }
        let bundle = if bundle.is_empty() {
            self.bundle_dir.clone()
        } else {
            PathBuf::from(&bundle)
        };
        if let Err(e) = options.save(&bundle) {
            self.diag
                .warn(format_args!("keep runtime options in the bundle: {e}"));
        }
        let runc = options.runc(&self.namespace, &bundle);
        let rootfs = bundle.join("rootfs");
        mount_rootfs(&rootfs_mounts, &rootfs).map_err(Error::runtime)?;
        let io_ids = (options.io_uid != 0 || options.io_gid != 0)
            .then_some((options.io_uid, options.io_gid));
        let console = self.console_path();
        let owner = stdio::Owner {
            container_id: &self.id,
            namespace: &self.namespace,
            io_ids,
        };
        let undo_mounts = |message: String| {
            if !rootfs_mounts.is_empty() {
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
        let undo_container = |core: &mut Supervisor, message: String| {
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
            rootfs_mounted: !rootfs_mounts.is_empty(),
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
        self.events.publish(
            &self.id,
            Event::Created {
                pid,
                bundle,
                rootfs: rootfs_mounts,
                stdio: paths,
            },
        );
        Ok(pid)
    }

    /// Starts a created process (`runc start`, or `runc exec --detach` for an exec); returns its
    /// pid.
    pub fn start(&mut self, key: &ProcessKey) -> Result<i32> {
        match key {
            ProcessKey::Init => self.start_init(),
            ProcessKey::Exec(_) => self.start_exec(key),
        }
    }

    fn start_init(&mut self) -> Result<i32> {
        let id = self.id.clone();
        let container = self.container()?;
        lifecycle::check_start(&ProcessKey::Init, container.init.phase())
            .map_err(|e| e.context(format!("container {id}")))?;
        let runc = container.runc.clone();
        self.reap_needed = true;
        runc.start(&id, &mut ReaperWait(&mut self.reaper))?;
        let container = self.container_mut()?;
        container.init.state = Phase::Running;
        let pid = container.init.pid;
        self.events.publish(
            &id,
            Event::Started {
                key: ProcessKey::Init,
                pid,
            },
        );
        Ok(pid)
    }

    fn start_exec(&mut self, key: &ProcessKey) -> Result<i32> {
        let id = self.id.clone();
        let container = self.container()?;
        lifecycle::check_exec(container.init.phase())
            .map_err(|e| e.context(format!("container {id}")))?;
        let runc = container.runc.clone();
        let io_ids = (container.options.io_uid != 0 || container.options.io_gid != 0)
            .then_some((container.options.io_uid, container.options.io_gid));
        let bundle = PathBuf::from(&container.bundle);
        let proc = self.process(key)?;
        lifecycle::check_start(key, proc.phase())?;
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
            &id,
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
                let proc = self.process_mut(key)?;
                proc.exited(Exit {
                    pid: 0,
                    status: ExitStatus::Exited(code),
                    reaped_at: SystemTime::now(),
                });
                return Err(error);
            }
        };
        let connected = self.connect_stdio(&mut prepared, &key.to_string());
        let (outputs, input, terminal) = connected.map_err(Error::runtime)?;
        let pending_exit = self.watch(pid, key);
        let proc = self.process_mut(key)?;
        proc.pid = pid;
        proc.pending_exit = pending_exit;
        proc.state = Phase::Running;
        proc.outputs = outputs;
        proc.input = input;
        proc.terminal = terminal;
        proc.spec = None;
        self.events.publish(
            &id,
            Event::Started {
                key: key.clone(),
                pid,
            },
        );
        Ok(pid)
    }

    /// Registers an exec (started by [`Supervisor::start`]).
    pub fn add_exec(
        &mut self,
        exec_id: ExecId,
        process: oci_spec::runtime::Process,
        stdio: StdioPaths,
    ) -> Result<()> {
        self.check_new_exec(&exec_id)?;
        let mut proc = Proc::new(ProcessKey::Exec(exec_id.clone()), stdio);
        proc.spec = Some(process);
        self.container_mut()?.execs.insert(exec_id.clone(), proc);
        self.events
            .publish(&self.id, Event::ExecAdded { exec: exec_id });
        Ok(())
    }

    /// Whether an exec of this id may be added now (before its process is even read).
    pub fn check_new_exec(&self, exec_id: &ExecId) -> Result<()> {
        let id = &self.id;
        let container = self.container()?;
        if container.execs.len() >= MAX_EXECS {
            return Err(Error::exhausted(format!(
                "container {id} has {MAX_EXECS} execs: delete some first"
            )));
        }
        if container.execs.contains_key(exec_id) {
            return Err(Error::already_exists(format!(
                "id {exec_id}: already exists"
            )));
        }
        lifecycle::check_exec(container.init.phase())
            .map_err(|e| e.context(format!("container {id}")))
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
