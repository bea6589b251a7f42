//! The systems compared: runc alone (the floor), tether, conmon (invoked as podman invokes it), and
//! containerd with containerd-shim-runc-v2. Each starts a container running a shell script with its
//! output going to a log file, and says how to find the monitor, the init and the recorded exit.

use super::containerd::{PrivateContainerd, IMAGE};
use super::watch::{wait_exit, DirWatch};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tether_tests::fixture::BundleSpec;

pub const TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum System {
    RuncAlone,
    Tether,
    /// crun run -d, for start-up beside tether with crun.
    CrunAlone,
    /// tether with `--runtime crun`.
    TetherCrun,
    Conmon,
    Containerd,
    /// containerd with tether's own runtime v2 shim.
    ContainerdTether,
    /// podman 4.3 with conmon.
    Podman,
    /// podman 4.3 with tether as its conmon.
    PodmanTether,
}

impl System {
    pub fn name(self) -> &'static str {
        match self {
            System::RuncAlone => "runc alone",
            System::Tether => "tether",
            System::CrunAlone => "crun alone",
            System::TetherCrun => "tether+crun",
            System::Conmon => "conmon",
            System::Containerd => "containerd-shim-runc-v2",
            System::ContainerdTether => "containerd-shim-tether-v2",
            System::Podman => "podman+conmon",
            System::PodmanTether => "podman+tether",
        }
    }

    /// The OCI runtime it runs containers with.
    pub fn runtime(self) -> &'static str {
        match self {
            System::CrunAlone | System::TetherCrun => "crun",
            _ => "runc",
        }
    }

    /// Started through containerd (`ctr`), with this runtime.
    pub fn containerd_runtime(self) -> Option<&'static str> {
        match self {
            System::Containerd => Some("io.containerd.runc.v2"),
            System::ContainerdTether => Some("io.containerd.tether.v2"),
            _ => None,
        }
    }
}

/// One running container of one system.
pub struct Started {
    pub system: System,
    pub id: String,
    pub init_pid: i32,
    /// The process that watches the container (None for runc alone).
    pub monitor_pid: Option<i32>,
    pub log: PathBuf,
    /// Where the exit shows up on disk (tether, conmon); None: the init's death (runc alone) or an
    /// event (containerd).
    pub exit_file: Option<PathBuf>,
}

/// Paths and binaries shared by every start.
///
/// Runtime state (runc's root, tether's state dir, conmon's exit and socket dirs, pid files) lives in
/// `run_dir` on a tmpfs, as it does in deployments (/run); bundles and logs live in `dir` on disk.
pub struct Env {
    pub dir: PathBuf,
    pub run_dir: PathBuf,
    pub tether: PathBuf,
    pub containerd: Option<PrivateContainerd>,
    counter: std::cell::Cell<usize>,
}

impl Env {
    pub fn new(
        dir: &Path,
        run_dir: &Path,
        tether: PathBuf,
        containerd: Option<PrivateContainerd>,
    ) -> Result<Self, String> {
        for sub in ["logs", "bundles"] {
            std::fs::create_dir_all(dir.join(sub)).map_err(|e| format!("{sub}: {e}"))?;
        }
        for sub in [
            "runc-root",
            "tether-state",
            "conmon-exit",
            "conmon-sock",
            "pids",
        ] {
            std::fs::create_dir_all(run_dir.join(sub)).map_err(|e| format!("{sub}: {e}"))?;
        }
        Ok(Env {
            dir: dir.to_owned(),
            run_dir: run_dir.to_owned(),
            tether,
            containerd,
            counter: std::cell::Cell::new(0),
        })
    }

    pub fn logs_dir(&self) -> PathBuf {
        self.dir.join("logs")
    }

    fn runc_root(&self) -> PathBuf {
        self.run_dir.join("runc-root")
    }

    /// The `--root` the bench gives `runtime`.
    fn runtime_root(&self, runtime: &str) -> PathBuf {
        match runtime {
            "runc" => self.runc_root(),
            other => self.run_dir.join(format!("{other}-root")),
        }
    }

    fn tether_state(&self) -> PathBuf {
        self.run_dir.join("tether-state")
    }

    fn next_id(&self, system: System) -> String {
        let n = self.counter.get();
        self.counter.set(n + 1);
        let tag = match system {
            System::RuncAlone => "runc",
            System::Tether => "tether",
            System::CrunAlone => "crun",
            System::TetherCrun => "tethercrun",
            System::Conmon => "conmon",
            System::Containerd => "ctrd",
            System::ContainerdTether => "ctrdt",
            System::Podman => "podman",
            System::PodmanTether => "podmant",
        };
        format!("bench-{tag}-{n}")
    }

    /// Starts `script` under `system`; returns once the start command returned.
    pub fn start(&self, system: System, script: &str) -> Result<Started, String> {
        let id = self.next_id(system);
        let log = self.logs_dir().join(format!("{id}.log"));
        match system {
            System::RuncAlone | System::CrunAlone => self.start_alone(system, id, log, script),
            System::Tether | System::TetherCrun => self.start_tether(system, id, log, script),
            System::Conmon => self.start_conmon(id, log, script),
            System::Containerd | System::ContainerdTether => {
                self.start_containerd(system, id, log, script)
            }
            // podman's sides are measured on their own (bench/podman.rs).
            System::Podman | System::PodmanTether => Err(format!(
                "bench: {} is not started through the common systems",
                system.name()
            )),
        }
    }

    fn bundle(&self, id: &str, script: &str) -> Result<PathBuf, String> {
        let dir = self.dir.join("bundles").join(id);
        BundleSpec::shell(script)
            .create(&dir)
            .map_err(|e| e.to_string())?;
        Ok(dir)
    }

    /// The runtime alone: `runc run -d` (or crun's), its output straight into the log file.
    fn start_alone(
        &self,
        system: System,
        id: String,
        log: PathBuf,
        script: &str,
    ) -> Result<Started, String> {
        let runtime = system.runtime();
        let bundle = self.bundle(&id, script)?;
        let pid_file = self.run_dir.join("pids").join(&id);
        let out = std::fs::File::create(&log).map_err(|e| e.to_string())?;
        let status = Command::new(runtime)
            .arg("--root")
            .arg(self.runtime_root(runtime))
            .args(["run", "--detach", "--pid-file"])
            .arg(&pid_file)
            .arg("--bundle")
            .arg(&bundle)
            .arg(&id)
            .stdin(Stdio::null())
            .stdout(out.try_clone().map_err(|e| e.to_string())?)
            .stderr(out)
            .status()
            .map_err(|e| format!("{runtime} run: {e}"))?;
        if !status.success() {
            return Err(format!("{runtime} run {id}: {status}"));
        }
        Ok(Started {
            system,
            init_pid: read_pid(&pid_file)?,
            id,
            monitor_pid: None,
            log,
            exit_file: None,
        })
    }

    fn start_tether(
        &self,
        system: System,
        id: String,
        log: PathBuf,
        script: &str,
    ) -> Result<Started, String> {
        let runtime = system.runtime();
        let bundle = self.bundle(&id, script)?;
        let pid_file = self.run_dir.join("pids").join(&id);
        let output = Command::new(&self.tether)
            .arg("--state-dir")
            .arg(self.tether_state())
            .args(["run", "-d", "--id", &id, "--runtime", runtime, "--pid-file"])
            .arg(&pid_file)
            .arg("--bundle")
            .arg(&bundle)
            .arg("--runtime-root")
            .arg(self.runtime_root(runtime))
            .arg("--log")
            .arg(&log)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("tether run: {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "tether run {id}: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        let init_pid = read_pid(&pid_file)?;
        let state = self.tether_state().join(&id);
        Ok(Started {
            system,
            init_pid,
            monitor_pid: Some(read_pid(&state.join("daemon.pid"))?),
            exit_file: Some(state.join("exit")),
            id,
            log,
        })
    }

    /// As podman does: conmon with a start pipe and a sync pipe runs `runc create`, reports the pid on
    /// the sync pipe, and then the caller runs `runc start`.
    fn start_conmon(&self, id: String, log: PathBuf, script: &str) -> Result<Started, String> {
        let bundle = self.bundle(&id, script)?;
        let pid_file = self.run_dir.join("pids").join(&id);
        let conmon_pid_file = self.run_dir.join("pids").join(format!("{id}.conmon"));
        let (sync_read, sync_write) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| e.to_string())?;
        let (start_read, start_write) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| e.to_string())?;
        let (sync_fd, start_fd) = (sync_write.as_raw_fd(), start_read.as_raw_fd());
        let mut cmd = Command::new("conmon");
        cmd.args([
            "--api-version",
            "1",
            "-c",
            &id,
            "-u",
            &id,
            "-n",
            &id,
            "-r",
            "/usr/sbin/runc",
            "-b",
        ])
        .arg(&bundle)
        .arg("-p")
        .arg(&pid_file)
        .arg("-P")
        .arg(&conmon_pid_file)
        .arg("--exit-dir")
        .arg(self.run_dir.join("conmon-exit"))
        .arg("--socket-dir-path")
        .arg(self.run_dir.join("conmon-sock"))
        .args(["--full-attach", "--log-level", "error", "-l"])
        .arg(format!("k8s-file:{}", log.display()))
        .args(["--runtime-arg", "--root", "--runtime-arg"])
        .arg(self.runc_root())
        .env("_OCI_SYNCPIPE", "3")
        .env("_OCI_STARTPIPE", "4")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        // SAFETY: dup2 is async-signal-safe; the fds are valid in the child until exec.
        unsafe {
            cmd.pre_exec(move || {
                nix::unistd::dup2(sync_fd, 3)?;
                nix::unistd::dup2(start_fd, 4)?;
                Ok(())
            });
        }
        let mut child = cmd.spawn().map_err(|e| format!("conmon: {e}"))?;
        drop(sync_write);
        drop(start_read);
        nix::unistd::write(&start_write, b"0").map_err(|e| format!("conmon start pipe: {e}"))?;
        drop(start_write);
        let status = child.wait().map_err(|e| e.to_string())?;
        if !status.success() {
            return Err(format!("conmon {id}: {status}"));
        }
        let report = read_all(sync_read);
        if !report.contains("\"data\"") || report.contains("\"data\": -") {
            return Err(format!("conmon {id}: sync pipe said {report:?}"));
        }
        let status = Command::new("runc")
            .arg("--root")
            .arg(self.runc_root())
            .args(["start", &id])
            .status()
            .map_err(|e| e.to_string())?;
        if !status.success() {
            return Err(format!("runc start {id}: {status}"));
        }
        Ok(Started {
            system: System::Conmon,
            init_pid: read_pid(&pid_file)?,
            monitor_pid: Some(read_pid(&conmon_pid_file)?),
            exit_file: Some(self.run_dir.join("conmon-exit").join(&id)),
            id,
            log,
        })
    }

    fn start_containerd(
        &self,
        system: System,
        id: String,
        log: PathBuf,
        script: &str,
    ) -> Result<Started, String> {
        let containerd = self
            .containerd
            .as_ref()
            .ok_or("containerd is not running")?;
        containerd.ctr(&[
            "run",
            "-d",
            "--runtime",
            system.containerd_runtime().expect("a containerd system"),
            "--log-uri",
            &format!("file://{}", log.display()),
            IMAGE,
            &id,
            "sh",
            "-c",
            script,
        ])?;
        let tasks = containerd.ctr(&["task", "ls"])?;
        let init_pid = tasks
            .lines()
            .find_map(|l| {
                let mut fields = l.split_whitespace();
                (fields.next() == Some(id.as_str())).then(|| fields.next()?.parse().ok())?
            })
            .ok_or_else(|| format!("ctr task ls does not show {id}"))?;
        let shim = super::procfs::find_processes(&[system.name(), &format!("-id {id} ")])
            .into_iter()
            .next();
        Ok(Started {
            system,
            init_pid,
            monitor_pid: shim,
            exit_file: None,
            id,
            log,
        })
    }

    /// Waits until the container's exit is recorded; returns when it was.
    pub fn wait_recorded(
        &self,
        started: &Started,
        watch: Option<&DirWatch>,
    ) -> Result<Instant, String> {
        match (started.system, &started.exit_file, watch) {
            (System::Containerd | System::ContainerdTether, _, _) => self
                .containerd
                .as_ref()
                .ok_or("containerd is not running")?
                .wait_exit_event(&started.id, TIMEOUT),
            (_, Some(file), Some(watch)) => watch.wait(TIMEOUT, || {
                std::fs::read_to_string(file).is_ok_and(|t| !t.trim().is_empty())
            }),
            _ => wait_exit(started.init_pid, TIMEOUT),
        }
    }

    /// A watch on the directory where the exit will be recorded, set up before the exit happens.
    pub fn exit_watch(&self, started: &Started) -> Result<Option<DirWatch>, String> {
        match &started.exit_file {
            Some(file) => Ok(Some(DirWatch::new(
                file.parent().expect("exit files live in a dir"),
            )?)),
            None => Ok(None),
        }
    }

    /// A command that runs `true` in the container and exits with its code: `runc exec` for runc
    /// alone, `tether exec` for tether, `ctr task exec` under containerd; None for conmon (an exec
    /// has a monitor of its own there) and podman's sides.
    pub fn exec_true(&self, started: &Started) -> Option<Command> {
        match started.system {
            System::RuncAlone | System::CrunAlone => {
                let runtime = started.system.runtime();
                let mut cmd = Command::new(runtime);
                cmd.arg("--root").arg(self.runtime_root(runtime)).args([
                    "exec",
                    &started.id,
                    "true",
                ]);
                Some(cmd)
            }
            System::Tether | System::TetherCrun => {
                let mut cmd = Command::new(&self.tether);
                cmd.arg("--state-dir").arg(self.tether_state()).args([
                    "exec",
                    &started.id,
                    "--",
                    "true",
                ]);
                Some(cmd)
            }
            System::Containerd | System::ContainerdTether => {
                let containerd = self.containerd.as_ref()?;
                let n = self.counter.get();
                self.counter.set(n + 1);
                let mut cmd = Command::new("ctr");
                cmd.arg("-a").arg(containerd.socket()).args([
                    "-n",
                    super::containerd::NAMESPACE,
                    "task",
                    "exec",
                    "--exec-id",
                    &format!("bench-exec-{n}"),
                    &started.id,
                    "true",
                ]);
                Some(cmd)
            }
            System::Conmon | System::Podman | System::PodmanTether => None,
        }
    }

    /// Removes the container and its monitor, whatever state they are in.
    /// Removes a running container the fastest way its system has, and times it: `tether rm -f`;
    /// for runc alone its floor, `runc kill KILL`, `runc state` until stopped, `runc delete`.
    pub fn remove_timed(&self, started: &Started) -> Result<std::time::Duration, String> {
        let runc = |args: &[&str]| {
            Command::new("runc")
                .arg("--root")
                .arg(self.runc_root())
                .args(args)
                .stderr(Stdio::null())
                .output()
                .map_err(|e| format!("runc {}: {e}", args.join(" ")))
        };
        let start = std::time::Instant::now();
        match started.system {
            System::Tether => {
                let status = Command::new(&self.tether)
                    .arg("--state-dir")
                    .arg(self.tether_state())
                    .args(["rm", "-f", &started.id])
                    .stdout(Stdio::null())
                    .status()
                    .map_err(|e| format!("tether rm -f: {e}"))?;
                if !status.success() {
                    return Err(format!("tether rm -f {}: {status}", started.id));
                }
            }
            System::RuncAlone => {
                runc(&["kill", &started.id, "KILL"])?;
                loop {
                    let state = runc(&["state", &started.id])?;
                    if String::from_utf8_lossy(&state.stdout).contains("\"stopped\"") {
                        break;
                    }
                    if start.elapsed() > TIMEOUT {
                        return Err(format!("runc: {} not stopped after SIGKILL", started.id));
                    }
                }
                if !runc(&["delete", &started.id])?.status.success() {
                    return Err(format!("runc delete {} failed", started.id));
                }
            }
            other => return Err(format!("rm is not measured for {}", other.name())),
        }
        Ok(start.elapsed())
    }

    pub fn remove(&self, started: &Started) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(started.init_pid),
            nix::sys::signal::Signal::SIGKILL,
        );
        match started.system {
            System::Tether | System::TetherCrun => {
                let _ = Command::new(&self.tether)
                    .arg("--state-dir")
                    .arg(self.tether_state())
                    .args(["rm", "-f", &started.id])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
            System::RuncAlone | System::CrunAlone | System::Conmon => {
                let runtime = started.system.runtime();
                let _ = Command::new(runtime)
                    .arg("--root")
                    .arg(self.runtime_root(runtime))
                    .args(["delete", "--force", &started.id])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
            System::Containerd | System::ContainerdTether => {
                if let Some(containerd) = &self.containerd {
                    containerd.remove(&started.id);
                }
            }
            // Never started here (bench/podman.rs removes its own).
            System::Podman | System::PodmanTether => {}
        }
        if let Some(pid) = started.monitor_pid {
            if started.system.containerd_runtime().is_none() && super::procfs::alive(pid) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        let _ = std::fs::remove_file(&started.log);
        let _ = std::fs::remove_dir_all(self.dir.join("bundles").join(&started.id));
    }
}

fn read_pid(path: &Path) -> Result<i32, String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            if let Ok(pid) = text.trim().parse() {
                return Ok(pid);
            }
        }
        if Instant::now() > deadline {
            return Err(format!("no pid in {}", path.display()));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The first line on a pipe (conmon's daemonized child may keep its end open for long).
fn read_all(fd: OwnedFd) -> String {
    use std::io::BufRead;
    let mut text = String::new();
    let _ = std::io::BufReader::new(std::fs::File::from(fd)).read_line(&mut text);
    text
}
