//! Making and starting processes: Create (the rootfs, the stdio, `runc create`), Start (`runc
//! start`, or `runc exec --detach` for an exec) and Exec (an exec's process, kept until its Start).

use super::mounts::{mount_rootfs, unmount_rootfs};
use super::network;
use super::runtime::{join_cgroup, read_pid, RuntimeOptions};
use super::stdio::{self, Prepared, StdioPlan};
use super::{Connected, Container, Proc, Supervisor};
use crate::common::sys::receive_terminal;
use shim_core::lifecycle::{self, Phase};
use shim_core::{
    Error, Event, ExecId, Exit, ExitStatus, ProcessKey, Result, RootfsMount, StdioPaths,
};
use shim_io::Destination;
use shim_io::{LogFormat, LogSink, Rotation, SinkOptions};
use shim_runc::{CreateOptions, DeleteOptions, ExecOptions, RunOptions, Runc};
use std::collections::HashMap;
use std::fs::File;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Exec processes a container may have at once, started or not (each is kept until deleted).
const MAX_EXECS: usize = 4096;

/// What `tether ps` shows of a container.
#[derive(Debug, Clone, Default)]
pub struct Listing {
    /// Where its output is kept (none: a client's fifos).
    pub log_path: PathBuf,
    /// `cri`, `json-file` or `raw`.
    pub log_format: String,
    pub runtime: PathBuf,
    /// The runtime's `--root`, when one was given.
    pub runtime_root: Option<PathBuf>,
}

/// What `tether run` asks for: the container run at once (`runc run --detach`), its output in
/// tether's log.
#[derive(Debug)]
pub struct RunSpec {
    pub bundle: PathBuf,
    pub runc: Runc,
    pub log: LogSink,
    pub listing: Listing,
    /// Keep a stdin pipe for attach clients.
    pub stdin: bool,
    pub terminal: bool,
    /// Mounts for the bundle's `rootfs` (`--rootfs DIR:O`'s overlay), unmounted at delete.
    pub rootfs: Vec<RootfsMount>,
    /// tether's bridge network, attached between create and start, detached at the exit.
    pub network: Option<network::Request>,
    /// Which runtime command starts it.
    pub how: RunHow,
    /// Where the runtime writes the init's pid (default: the scratch directory's `init.pid`).
    pub pid_file: Option<PathBuf>,
    /// Arguments for `create` (or `run`) passed as they are, after its options.
    pub create_args: Vec<String>,
    /// The process gets the shim's own stdio ([`StdioPlan::Inherit`]); `log`, `stdin` and
    /// `terminal` are not used.
    pub passthrough: bool,
}

/// How a [`RunSpec`]'s process is started.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum RunHow {
    /// `runc run --detach` (create, attach the network, start, with a network).
    #[default]
    Run,
    /// Only `runc create`: the start is someone else's (podman runs `runc start` itself). To the
    /// supervisor the container runs from its create on: its timeout counts, it may be killed.
    CreateOnly,
    /// `runc exec --detach --process FILE` in the running container the supervisor's id names:
    /// a monitor of one exec (podman's exec sessions). The exec is the supervisor's init for the
    /// monitor's life; the container is someone else's, and never deleted here.
    ExecFile(PathBuf),
}

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

    /// Who a process's stdio is for (see [`stdio::Owner`]).
    fn stdio_owner(&self, io_ids: Option<(u32, u32)>, file_log_rotated: bool) -> stdio::Owner<'_> {
        stdio::Owner {
            container_id: &self.id,
            namespace: &self.namespace,
            io_ids,
            file_log_rotated,
        }
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
            let to = prepared
                .terminal_output
                .take()
                .unwrap_or(Destination::Discard);
            let n = self
                .copier
                .add_output(
                    self.poll.registry(),
                    reader,
                    to,
                    &format!("{name} terminal"),
                    "terminal",
                )
                .map_err(|e| e.to_string())?;
            outputs.push(n);
            if let Some(from) = prepared.terminal_input.take() {
                let writer = master.try_clone().map_err(|e| e.to_string())?;
                input = Some(
                    self.copier
                        .add_input(self.poll.registry(), from, writer, true)
                        .map_err(|e| e.to_string())?,
                );
            }
            terminal = Some(master);
        }
        let registry = self.poll.registry();
        for (stream, (fd, to)) in ["stdout", "stderr"].iter().zip(prepared.outputs.drain(..)) {
            let name = format!("{name} {stream}");
            let n = self.copier.add_output(registry, fd, to, &name, stream);
            outputs.push(n.map_err(|e| e.to_string())?);
        }
        if let Some((from, writer)) = prepared.input.take() {
            let n = self.copier.add_input(registry, from, writer, false);
            input = Some(n.map_err(|e| e.to_string())?);
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
        let console = self.console_path();
        // A file:// log to rotate is written by the copier's log, in the raw format containerd's own
        // file:// logs have.
        let rotated_log = match stdio::shared_file_log(&paths) {
            Some(path) if options.log_max_size > 0 => {
                let sink_options = SinkOptions::new(LogFormat::Raw).rotation(Rotation {
                    max_size: options.log_max_size,
                    max_files: options.log_max_files.max(1),
                });
                let sink = LogSink::open(path, sink_options)
                    .map_err(|e| Error::runtime(format!("stdout {}: {e}", paths.stdout)))?;
                self.copier.log_to(sink);
                true
            }
            _ => false,
        };
        let owner = self.stdio_owner(options.io_ids(), rotated_log);
        let undo_mounts = |message: String| {
            if !rootfs_mounts.is_empty() {
                unmount_rootfs(&rootfs);
            }
            Error::runtime(message)
        };
        let plan = StdioPlan::Paths(paths.clone());
        let mut prepared =
            stdio::prepare(&plan, &console, owner).map_err(|e| undo_mounts(e.to_string()))?;
        let pid_file = bundle.join("init.pid");
        let mut create = CreateOptions::new(&bundle)
            .pid_file(&pid_file)
            .no_pivot(options.no_pivot_root)
            .no_new_keyring(options.no_new_keyring);
        if paths.terminal {
            create = create.console_socket(&console);
        }
        let runtime_io = prepared.take_runtime_io();
        let id = self.id.clone();
        let created = self.runtime_raw(|wait| runc.create(&id, &create, runtime_io, wait));
        let undo_container = |core: &mut Supervisor, message: String| {
            core.copier.drop_log();
            let _ = core.runtime_raw(|wait| runc.delete(&id, DeleteOptions { force: true }, wait));
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
        let connected = match self.connect_stdio(&mut prepared, "init") {
            Ok(connected) => connected,
            Err(message) => return Err(undo_container(self, message)),
        };
        let mut init = Proc::new(ProcessKey::Init, plan);
        let pending_exit = self.watch(pid, &ProcessKey::Init);
        init.runs(pid, connected, pending_exit);
        let listing = Listing {
            log_path: paths
                .stdout
                .strip_prefix("file://")
                .unwrap_or_default()
                .into(),
            // containerd's file:// logs are the output as it came.
            log_format: "raw".into(),
            runtime: if options.binary_name.is_empty() {
                "runc".into()
            } else {
                options.binary_name.clone().into()
            },
            runtime_root: Some(options.runc_root(&self.namespace)),
        };
        let rootfs_mounted = !rootfs_mounts.is_empty();
        let shares = shares_pid_namespace(&bundle);
        self.adopt(init, &bundle, runc, options, listing, shares);
        if let Some(container) = &mut self.container {
            container.rootfs_mounted = rootfs_mounted;
        }
        if let Some(on_created) = self.on_created {
            on_created(self);
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

    /// Runs `tether run`'s container at once (`runc run --detach`: one runtime process instead of
    /// create and start's two, about 10 ms less), its output into tether's log. Returns the init's
    /// pid; the error is one line for the user, and no container is left after one.
    pub fn run_container(&mut self, mut spec: RunSpec) -> Result<i32> {
        let rootfs_mounts = std::mem::take(&mut spec.rootfs);
        let rootfs = spec.bundle.join("rootfs");
        mount_rootfs(&rootfs_mounts, &rootfs).map_err(Error::runtime)?;
        let rootfs_mounted = !rootfs_mounts.is_empty();
        let started = self.run_mounted(spec, rootfs_mounted);
        if started.is_err() && rootfs_mounted {
            unmount_rootfs(&rootfs);
        }
        started
    }

    /// [`Supervisor::run_container`] once the rootfs is mounted.
    fn run_mounted(&mut self, spec: RunSpec, rootfs_mounted: bool) -> Result<i32> {
        let RunSpec {
            bundle,
            runc,
            log,
            listing,
            stdin,
            terminal,
            rootfs: _,
            network,
            how,
            pid_file,
            create_args,
            passthrough,
        } = spec;
        self.copier.log_to(log);
        let plan = if passthrough {
            StdioPlan::Inherit
        } else {
            StdioPlan::Log { stdin, terminal }
        };
        let console = self.console_path();
        let owner = self.stdio_owner(None, false);
        let mut prepared =
            stdio::prepare(&plan, &console, owner).map_err(|e| Error::runtime(e.to_string()))?;
        let pid_file = pid_file.unwrap_or_else(|| self.scratch_dir.join("init.pid"));
        let mut create = CreateOptions::new(&bundle)
            .pid_file(&pid_file)
            .extra_args(create_args);
        if terminal {
            create = create.console_socket(&console);
        }
        let runtime_io = prepared.take_runtime_io();
        // A network is attached between create and start, in the namespace the init waits in.
        let id = self.id.clone();
        let ran = self.runtime_raw(|wait| match (&how, &network) {
            (RunHow::ExecFile(process_file), _) => {
                let options = ExecOptions {
                    detach: true,
                    pid_file: create.pid_file.clone(),
                    console_socket: create.console_socket.clone(),
                    tty: terminal,
                    extra_args: create.extra_args.clone(),
                };
                runc.exec_file(&id, process_file, &options, runtime_io, wait)
            }
            (RunHow::CreateOnly, _) => runc.create(&id, &create, runtime_io, wait),
            (RunHow::Run, None) => runc.run(
                &id,
                &RunOptions {
                    create,
                    detach: true,
                },
                runtime_io,
                wait,
            ),
            (RunHow::Run, Some(_)) => runc.create(&id, &create, runtime_io, wait),
        });
        // Whatever failed, no container of this id is left (runc removes a container whose start
        // failed, but not every runtime does).
        let undo = |supervisor: &mut Supervisor| {
            if !matches!(how, RunHow::ExecFile(_)) {
                let _ = supervisor
                    .runtime_raw(|wait| runc.delete(&id, DeleteOptions { force: true }, wait));
            }
        };
        if let Err(e) = ran {
            let _ = std::fs::remove_file(&console);
            undo(self);
            // The runtime's stderr is the container's: what it said there is its error too.
            let said = prepared.outputs.get(1).and_then(|(fd, _)| last_words(fd));
            let heard = e.runtime_message().map(str::to_owned);
            let mut error = super::gateway::start_failure(e, false);
            if let Some(said) = said.filter(|said| heard.is_none_or(|m| !m.contains(said))) {
                error.message = format!("{}; the runtime said: {said}", error.message);
            }
            return Err(error);
        }
        let connected = read_pid(&pid_file).and_then(|pid| {
            let connected = self.connect_stdio(&mut prepared, "init")?;
            Ok((pid, connected))
        });
        let (pid, connected) = match connected {
            Ok(connected) => connected,
            Err(message) => {
                undo(self);
                return Err(Error::runtime(message));
            }
        };
        if let Some(request) = &network {
            let netns = PathBuf::from(format!("/proc/{pid}/ns/net"));
            let attached = self
                .runtime_raw(|wait| network::attach(request, &netns, wait))
                .map_err(Error::runtime);
            let started = attached.and_then(|_| {
                self.runtime_raw(|wait| runc.start(&id, wait)).map_err(|e| {
                    let _ = self.runtime_raw(|wait| network::detach(&request.record, wait));
                    super::gateway::start_failure(e, false)
                })
            });
            if let Err(error) = started {
                undo(self);
                return Err(error);
            }
        }
        let mut init = Proc::new(ProcessKey::Init, plan);
        let pending_exit = self.watch(pid, &ProcessKey::Init);
        init.runs(pid, connected, pending_exit);
        init.state = Phase::Running;
        let options = RuntimeOptions::default();
        // An exec's monitor owns no container: what else runs in it at the exec's exit is not
        // its to kill.
        let shares = !matches!(how, RunHow::ExecFile(_)) && shares_pid_namespace(&bundle);
        self.adopt(init, &bundle, runc, options, listing, shares);
        if let Some(container) = &mut self.container {
            container.rootfs_mounted = rootfs_mounted;
            container.network = network.map(|request| request.record);
        }
        self.diag.info(format_args!(
            "container {} started, init pid {pid}",
            self.id
        ));
        Ok(pid)
    }

    /// Makes the container's record around its init, which runs (or waits for its start) now:
    /// its cgroup found, OOM kills watched.
    fn adopt(
        &mut self,
        init: Proc,
        bundle: &Path,
        runc: Runc,
        options: RuntimeOptions,
        listing: Listing,
        shares_pid_namespace: bool,
    ) {
        let pid = init.pid;
        let cgroup = crate::common::cgroup::Cgroup::of_process(pid);
        let cgroup = cgroup
            .map_err(|e| {
                self.diag
                    .info(format_args!("stats through the runtime: {e}"))
            })
            .ok();
        self.container = Some(Container {
            bundle: bundle.to_string_lossy().into_owned(),
            rootfs_mounted: false,
            runc,
            options,
            init,
            execs: HashMap::new(),
            oom: self.register_oom(cgroup.as_ref()),
            oom_killed: false,
            shares_pid_namespace,
            cgroup,
            created_at: crate::common::time::now(),
            listing,
            network: None,
        });
        // An init reaped already (while the runtime was waited for) passed on_reap by: the rest
        // of a container without its own PID namespace is killed here instead.
        if self
            .container
            .as_ref()
            .is_some_and(|c| c.shares_pid_namespace && c.init.pending_exit.is_some())
        {
            self.kill_the_rest();
        }
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
        self.runtime(|wait| runc.start(&id, wait))?;
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
        let io_ids = container.options.io_ids();
        let proc = self.process(key)?;
        lifecycle::check_start(key, proc.phase())?;
        let plan = proc.stdio.clone();
        let terminal = plan.terminal();
        let spec = proc.spec.clone().expect("a created exec has its process");
        let console = self.console_path();
        let owner = self.stdio_owner(io_ids, false);
        let mut prepared =
            stdio::prepare(&plan, &console, owner).map_err(|e| Error::runtime(e.to_string()))?;
        let pid_file = self
            .scratch_dir
            .join(format!("exec-{}.pid", self.scratch_serial));
        let options = ExecOptions {
            detach: true,
            pid_file: Some(pid_file.clone()),
            console_socket: terminal.then(|| console.clone()),
            tty: terminal,
            extra_args: Vec::new(),
        };
        let runtime_io = prepared.take_runtime_io();
        let ran = self.runtime_raw(|wait| runc.exec(&id, &spec, &options, runtime_io, wait));
        let pid = ran
            .map_err(|e| super::gateway::start_failure(e, true))
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
        let connected = connected.map_err(Error::runtime)?;
        let pending_exit = self.watch(pid, key);
        let proc = self.process_mut(key)?;
        proc.runs(pid, connected, pending_exit);
        proc.state = Phase::Running;
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
        stdio: StdioPlan,
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
///
/// Only the namespaces are read: a whole runtime spec parsed takes tens of KiB of stack, which stay
/// resident for the daemon's life.
fn shares_pid_namespace(bundle: &Path) -> bool {
    #[derive(serde::Deserialize)]
    struct Spec {
        linux: Option<Linux>,
    }
    #[derive(serde::Deserialize)]
    struct Linux {
        #[serde(default)]
        namespaces: Vec<Namespace>,
    }
    #[derive(serde::Deserialize)]
    struct Namespace {
        #[serde(rename = "type")]
        kind: String,
        path: Option<String>,
    }
    let spec = std::fs::read(bundle.join("config.json"))
        .ok()
        .and_then(|json| serde_json::from_slice::<Spec>(&json).ok());
    let Some(spec) = spec else {
        return true;
    };
    let own = spec.linux.is_some_and(|linux| {
        linux
            .namespaces
            .iter()
            .any(|ns| ns.kind == "pid" && ns.path.as_deref().is_none_or(str::is_empty))
    });
    !own
}

/// The last line written to a pipe nobody read yet (at most 64 KiB of it).
fn last_words(pipe: &OwnedFd) -> Option<String> {
    use std::io::Read;
    shim_io::fdio::set_nonblocking(pipe).ok()?;
    let mut file = File::from(pipe.try_clone().ok()?);
    let mut text = vec![0; 64 * 1024];
    let n = file.read(&mut text).ok()?;
    let text = String::from_utf8_lossy(&text[..n]);
    text.lines()
        .rev()
        .map(str::trim)
        .find(|line| !line.is_empty())
        .map(|line| line.chars().take(500).collect())
}
