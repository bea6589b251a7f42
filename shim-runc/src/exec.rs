//! Running subcommands: the spawn form (pid and pipes, never waited for here) and the blocking form
//! built on it.

use crate::child_setup;
use crate::error::{last_log_error, Error, Result};
use crate::options::{
    CreateOptions, DeleteOptions, ExecOptions, KillOptions, RunOptions, Subcommand,
};
use crate::output::{self, ContainerState, Stats};
use crate::Runc;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use shim_core::ExitStatus;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{ChildStderr, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

/// Collects the exit of a spawned runtime child. A process with a reaper implements this with it, so
/// that one owner of `waitpid(-1)` sees every exit; [`DirectWait`] suits everyone else.
pub trait ExitWaiter {
    /// Blocks until `pid` exits and returns its wait status.
    fn wait(&mut self, pid: i32) -> std::io::Result<ExitStatus>;

    /// An fd that becomes readable when the waiter has work to do while the runtime's output is
    /// still being read (a reaper's SIGCHLD fd). Some runtime commands wait for *other* processes
    /// to be reaped (`delete --force` waits for the container's init to be gone), so a reaper must
    /// keep reaping while we read, or both sides wait on each other.
    fn wakeup_fd(&self) -> Option<BorrowedFd<'_>> {
        None
    }

    /// Does the work [`ExitWaiter::wakeup_fd`] announced (reaps, keeping the exits for later).
    fn service(&mut self) {}

    /// Waits at most `timeout` for `pid`; `None` when it is still running then. The default waits
    /// without a limit.
    fn wait_timeout(&mut self, pid: i32, timeout: Duration) -> std::io::Result<Option<ExitStatus>> {
        let _ = timeout;
        self.wait(pid).map(Some)
    }
}

/// `waitpid(pid)`: for processes that do not reap with `waitpid(-1)` elsewhere.
#[derive(Debug, Default, Clone, Copy)]
pub struct DirectWait;

impl ExitWaiter for DirectWait {
    fn wait(&mut self, pid: i32) -> std::io::Result<ExitStatus> {
        use nix::sys::wait::{waitpid, WaitStatus};
        loop {
            match waitpid(nix::unistd::Pid::from_raw(pid), None) {
                Ok(WaitStatus::Exited(_, code)) => return Ok(ExitStatus::Exited(code)),
                Ok(WaitStatus::Signaled(_, signal, core_dumped)) => {
                    return Ok(ExitStatus::Signaled {
                        signal: signal as i32,
                        core_dumped,
                    })
                }
                Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// The stdio of a runtime child. For `create`, `run` and `exec` this is also the stdio of the container
/// process (the runtime passes its own on), so set it explicitly there.
#[derive(Debug)]
pub struct ProcessIo {
    /// The child's stdin.
    pub stdin: Stdio,
    /// The child's stdout.
    pub stdout: Stdio,
    /// The child's stderr.
    pub stderr: Stdio,
}

impl ProcessIo {
    /// stdin from /dev/null, stdout and stderr piped back to us: right for commands whose output we
    /// read (`state`, `ps`, `kill`, ...).
    pub fn piped() -> Self {
        ProcessIo {
            stdin: Stdio::null(),
            stdout: Stdio::piped(),
            stderr: Stdio::piped(),
        }
    }

    /// Explicit stdio, typically the container's pipes.
    pub fn new(
        stdin: impl Into<Stdio>,
        stdout: impl Into<Stdio>,
        stderr: impl Into<Stdio>,
    ) -> Self {
        ProcessIo {
            stdin: stdin.into(),
            stdout: stdout.into(),
            stderr: stderr.into(),
        }
    }
}

/// A runtime child that was started and not waited for. Collect its exit through your reaper, then call
/// [`Spawned::finish`] with the wait status.
#[derive(Debug)]
pub struct Spawned {
    pid: i32,
    stdout: Option<ChildStdout>,
    stderr: Option<ChildStderr>,
    command: String,
    log: Option<PathBuf>,
    log_offset: u64,
    scratch: Option<PathBuf>,
}

impl Spawned {
    /// The child's pid: register interest in it with your reaper before returning to your event loop.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// `runc create web`: how the command is named in errors.
    pub fn command(&self) -> &str {
        &self.command
    }

    /// The child's stdout pipe, when it was piped.
    pub fn take_stdout(&mut self) -> Option<ChildStdout> {
        self.stdout.take()
    }

    /// The child's stderr pipe, when it was piped.
    pub fn take_stderr(&mut self) -> Option<ChildStderr> {
        self.stderr.take()
    }

    /// Turns the child's wait status into the command's result. A failure carries the runtime's last
    /// error from its log (written by this command), or else the last line of its piped stderr.
    pub fn finish(mut self, status: ExitStatus) -> Result<()> {
        let stderr = match self.stderr.take() {
            Some(mut pipe) => {
                let mut text = Vec::new();
                let _ = pipe.read_to_end(&mut text);
                text
            }
            None => Vec::new(),
        };
        self.finish_with_stderr(status, &stderr)
    }

    fn finish_with_stderr(self, status: ExitStatus, stderr: &[u8]) -> Result<()> {
        if status.success() {
            return Ok(());
        }
        let message = self
            .log
            .as_deref()
            .and_then(|log| last_log_error(log, self.log_offset))
            .or_else(|| last_line(stderr))
            .unwrap_or_else(|| "no error message from the runtime".to_owned());
        Err(Error::Failed {
            command: self.command.clone(),
            status: status.to_string(),
            message,
        })
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Some(path) = self.scratch.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn last_line(text: &[u8]) -> Option<String> {
    String::from_utf8_lossy(text)
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(str::to_owned)
}

impl Runc {
    /// `runc create web`, as named in errors.
    fn command_name(&self, subcommand: &Subcommand) -> String {
        match subcommand.container_id() {
            Some(id) => format!("{} {} {id}", self.name(), subcommand.name()),
            None => format!("{} {}", self.name(), subcommand.name()),
        }
    }

    /// Starts `subcommand` and returns without waiting for it. See [`Spawned`].
    pub fn spawn(&self, subcommand: &Subcommand, io: ProcessIo) -> Result<Spawned> {
        self.spawn_with_scratch(subcommand, io, None)
    }

    fn spawn_with_scratch(
        &self,
        subcommand: &Subcommand,
        io: ProcessIo,
        scratch: Option<PathBuf>,
    ) -> Result<Spawned> {
        let command = self.command_name(subcommand);
        let mut cmd = Command::new(self.binary());
        cmd.args(self.argv(subcommand))
            .stdin(io.stdin)
            .stdout(io.stdout)
            .stderr(io.stderr);
        child_setup::prepare_preserving(&mut cmd, self.preserved_fds());
        // A process group of its own: a runtime past its timeout is killed with everything it
        // started (a hung hook, a wrapper's child), which would otherwise hold its pipes open.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let log_offset = self
            .log_file()
            .and_then(|log| std::fs::metadata(log).ok())
            .map_or(0, |m| m.len());
        let mut child = cmd.spawn().map_err(|source| match source.kind() {
            ErrorKind::NotFound | ErrorKind::PermissionDenied => Error::RuntimeNotFound {
                command: command.clone(),
                binary: self.binary().to_owned(),
            },
            _ => Error::Spawn {
                command: command.clone(),
                binary: self.binary().to_owned(),
                source,
            },
        })?;
        // `child` is dropped without a wait: the exit belongs to the caller's waiter.
        Ok(Spawned {
            pid: child.id() as i32,
            stdout: child.stdout.take(),
            stderr: child.stderr.take(),
            command,
            log: self.log_file().map(Path::to_owned),
            log_offset,
            scratch,
        })
    }

    /// Runs `subcommand` to completion and returns what it printed on stdout (empty unless piped).
    pub fn run_to_end(
        &self,
        subcommand: &Subcommand,
        io: ProcessIo,
        waiter: &mut dyn ExitWaiter,
    ) -> Result<Vec<u8>> {
        let spawned = self.spawn(subcommand, io)?;
        complete(spawned, waiter, self.timeout)
    }

    /// `create`: the container exists, its init waits for [`Runc::start`]. `io` becomes the
    /// container's stdio.
    pub fn create(
        &self,
        id: &str,
        options: &CreateOptions,
        io: ProcessIo,
        waiter: &mut dyn ExitWaiter,
    ) -> Result<()> {
        let sub = Subcommand::Create {
            id: id.into(),
            options: options.clone(),
        };
        self.run_to_end(&sub, io, waiter).map(drop)
    }

    /// `start`.
    pub fn start(&self, id: &str, waiter: &mut dyn ExitWaiter) -> Result<()> {
        self.simple(Subcommand::Start { id: id.into() }, waiter)
    }

    /// `run`: create and start; with `detach` it returns once the container runs.
    pub fn run(
        &self,
        id: &str,
        options: &RunOptions,
        io: ProcessIo,
        waiter: &mut dyn ExitWaiter,
    ) -> Result<()> {
        let sub = Subcommand::Run {
            id: id.into(),
            options: options.clone(),
        };
        self.run_to_end(&sub, io, waiter).map(drop)
    }

    /// Writes `process` to a private file and builds the `exec` subcommand that reads it. The file is
    /// removed when the returned [`Spawned`] (from [`Runc::spawn_exec`]) is dropped.
    fn exec_subcommand(
        &self,
        id: &str,
        process: &oci_spec::runtime::Process,
        options: &ExecOptions,
    ) -> Result<(Subcommand, PathBuf)> {
        let command = format!("{} exec {id}", self.name());
        let json = serde_json::to_vec(process).map_err(|source| Error::Output {
            command: command.clone(),
            source,
        })?;
        let path = self.write_scratch(&command, "process", &json)?;
        let sub = Subcommand::Exec {
            id: id.into(),
            options: options.clone(),
            process_file: path.clone(),
        };
        Ok((sub, path))
    }

    /// `exec`, spawn form: `io` becomes the process's stdio (unless it has a terminal).
    pub fn spawn_exec(
        &self,
        id: &str,
        process: &oci_spec::runtime::Process,
        options: &ExecOptions,
        io: ProcessIo,
    ) -> Result<Spawned> {
        let (sub, path) = self.exec_subcommand(id, process, options)?;
        self.spawn_with_scratch(&sub, io, Some(path))
    }

    /// `exec`, blocking: returns when the runtime exits (at once with `detach`, else when the process
    /// does).
    pub fn exec(
        &self,
        id: &str,
        process: &oci_spec::runtime::Process,
        options: &ExecOptions,
        io: ProcessIo,
        waiter: &mut dyn ExitWaiter,
    ) -> Result<()> {
        let spawned = self.spawn_exec(id, process, options, io)?;
        complete(spawned, waiter, self.timeout).map(drop)
    }

    /// `exec` of a process someone else wrote to `process_file` (podman does), blocking as
    /// [`Runc::exec`].
    pub fn exec_file(
        &self,
        id: &str,
        process_file: &Path,
        options: &ExecOptions,
        io: ProcessIo,
        waiter: &mut dyn ExitWaiter,
    ) -> Result<()> {
        let sub = Subcommand::Exec {
            id: id.into(),
            options: options.clone(),
            process_file: process_file.to_owned(),
        };
        self.run_to_end(&sub, io, waiter).map(drop)
    }

    /// `kill`.
    pub fn kill(&self, id: &str, options: KillOptions, waiter: &mut dyn ExitWaiter) -> Result<()> {
        let sub = Subcommand::Kill {
            id: id.into(),
            options,
        };
        self.simple(sub, waiter)
    }

    /// `delete`.
    pub fn delete(
        &self,
        id: &str,
        options: DeleteOptions,
        waiter: &mut dyn ExitWaiter,
    ) -> Result<()> {
        let sub = Subcommand::Delete {
            id: id.into(),
            options,
        };
        self.simple(sub, waiter)
    }

    /// `pause`.
    pub fn pause(&self, id: &str, waiter: &mut dyn ExitWaiter) -> Result<()> {
        self.simple(Subcommand::Pause { id: id.into() }, waiter)
    }

    /// `resume`.
    pub fn resume(&self, id: &str, waiter: &mut dyn ExitWaiter) -> Result<()> {
        self.simple(Subcommand::Resume { id: id.into() }, waiter)
    }

    /// `update --resources`: applies `resources` to the running container.
    pub fn update(
        &self,
        id: &str,
        resources: &oci_spec::runtime::LinuxResources,
        waiter: &mut dyn ExitWaiter,
    ) -> Result<()> {
        let command = format!("{} update {id}", self.name());
        let json = serde_json::to_vec(resources).map_err(|source| Error::Output {
            command: command.clone(),
            source,
        })?;
        let path = self.write_scratch(&command, "resources", &json)?;
        let sub = Subcommand::Update {
            id: id.into(),
            resources_file: path.clone(),
        };
        let spawned = self.spawn_with_scratch(&sub, ProcessIo::piped(), Some(path))?;
        complete(spawned, waiter, self.timeout).map(drop)
    }

    /// `state`: the container's status and init pid.
    pub fn state(&self, id: &str, waiter: &mut dyn ExitWaiter) -> Result<ContainerState> {
        self.parsed(
            Subcommand::State { id: id.into() },
            waiter,
            output::parse_state,
        )
    }

    /// `list --format json`: every container under the runtime's root.
    pub fn list(&self, waiter: &mut dyn ExitWaiter) -> Result<Vec<ContainerState>> {
        self.parsed(Subcommand::List, waiter, output::parse_list)
    }

    /// `ps --format json`: the pids of the container's processes.
    pub fn ps(&self, id: &str, waiter: &mut dyn ExitWaiter) -> Result<Vec<i32>> {
        self.parsed(Subcommand::Ps { id: id.into() }, waiter, output::parse_ps)
    }

    /// `events --stats`: one set of resource statistics.
    pub fn stats(&self, id: &str, waiter: &mut dyn ExitWaiter) -> Result<Stats> {
        self.parsed(
            Subcommand::Stats { id: id.into() },
            waiter,
            output::parse_stats,
        )
    }

    /// `features`: what the runtime supports (runc ≥ 1.1), as the JSON it prints.
    pub fn features(&self, waiter: &mut dyn ExitWaiter) -> Result<serde_json::Value> {
        self.parsed(Subcommand::Features, waiter, |out| {
            serde_json::from_slice(out)
        })
    }

    fn simple(&self, sub: Subcommand, waiter: &mut dyn ExitWaiter) -> Result<()> {
        self.run_to_end(&sub, ProcessIo::piped(), waiter).map(drop)
    }

    fn parsed<T>(
        &self,
        sub: Subcommand,
        waiter: &mut dyn ExitWaiter,
        parse: impl FnOnce(&[u8]) -> serde_json::Result<T>,
    ) -> Result<T> {
        let stdout = self.run_to_end(&sub, ProcessIo::piped(), waiter)?;
        parse(&stdout).map_err(|source| Error::Output {
            command: self.command_name(&sub),
            source,
        })
    }

    fn write_scratch(&self, command: &str, what: &str, contents: &[u8]) -> Result<PathBuf> {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let path = self.scratch_dir.join(format!(
            "{}-{what}-{}-{stamp}.json",
            self.name(),
            std::process::id()
        ));
        let write = || -> std::io::Result<()> {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)?;
            file.write_all(contents)
        };
        write().map_err(|source| Error::Scratch {
            command: command.to_owned(),
            path: path.clone(),
            source,
        })?;
        Ok(path)
    }
}

/// After a runtime is killed for its timeout, how long its pipes may stay open (a process it
/// started that left its process group still holds them) before they are given up.
const PIPES_AFTER_KILL: Duration = Duration::from_secs(2);

/// Reads whatever was piped to the end, waits, and interprets the status; a runtime past its
/// `timeout` is killed with its whole process group.
fn complete(
    mut spawned: Spawned,
    waiter: &mut dyn ExitWaiter,
    timeout: Option<Duration>,
) -> Result<Vec<u8>> {
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    let stdout = spawned.stdout.take();
    let stderr = spawned.stderr.take();
    let kill = |pid: i32| {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    };
    let wait_error = |source| Error::Wait {
        command: spawned.command.clone(),
        source,
    };
    let (out, err, mut timed_out) = read_both(stdout, stderr, waiter, deadline, || {
        kill(spawned.pid)
    })
    .map_err(|source| Error::Read {
        command: spawned.command.clone(),
        source,
    })?;
    let status = match deadline {
        Some(deadline) if !timed_out => {
            let left = deadline.saturating_duration_since(Instant::now());
            match waiter.wait_timeout(spawned.pid, left).map_err(wait_error)? {
                Some(status) => status,
                None => {
                    timed_out = true;
                    kill(spawned.pid);
                    waiter.wait(spawned.pid).map_err(wait_error)?
                }
            }
        }
        _ => waiter.wait(spawned.pid).map_err(wait_error)?,
    };
    if timed_out {
        return Err(Error::TimedOut {
            command: spawned.command.clone(),
            timeout: timeout.unwrap_or_default(),
        });
    }
    spawned.finish_with_stderr(status, &err)?;
    Ok(out)
}

/// Reads two pipes to EOF at once, so neither can fill up and stall the child while we block on the
/// other, servicing the waiter meanwhile.
fn read_both(
    mut stdout: Option<ChildStdout>,
    mut stderr: Option<ChildStderr>,
    waiter: &mut dyn ExitWaiter,
    deadline: Option<Instant>,
    kill: impl Fn(),
) -> std::io::Result<(Vec<u8>, Vec<u8>, bool)> {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let mut chunk = [0u8; 8192];
    let mut timed_out = false;
    let mut given_up_at = None;
    while stdout.is_some() || stderr.is_some() {
        let timeout = match deadline {
            Some(_) if timed_out => {
                let left = given_up_at
                    .get_or_insert_with(|| Instant::now() + PIPES_AFTER_KILL)
                    .saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX)
            }
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    // Killed with its process group, the runtime's pipes close (a process that
                    // left the group may keep them: that wait is bounded too).
                    kill();
                    timed_out = true;
                    continue;
                }
                PollTimeout::try_from(left.max(Duration::from_millis(1)))
                    .unwrap_or(PollTimeout::MAX)
            }
            None => PollTimeout::NONE,
        };
        let mut fds = Vec::with_capacity(3);
        if let Some(pipe) = &stdout {
            fds.push(PollFd::new(pipe.as_fd(), PollFlags::POLLIN));
        }
        if let Some(pipe) = &stderr {
            fds.push(PollFd::new(pipe.as_fd(), PollFlags::POLLIN));
        }
        let pipes = fds.len();
        if let Some(fd) = waiter.wakeup_fd() {
            fds.push(PollFd::new(fd, PollFlags::POLLIN));
        }
        match poll(&mut fds, timeout) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|fd| fd.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(fds);
        if ready.len() > pipes && ready[pipes] {
            waiter.service();
        }
        let mut index = 0;
        if stdout.is_some() {
            if ready[index] && read_some(&mut stdout, &mut out, &mut chunk)? {
                stdout = None;
            }
            index += 1;
        }
        if stderr.is_some() && ready[index] && read_some(&mut stderr, &mut err, &mut chunk)? {
            stderr = None;
        }
    }
    Ok((out, err, timed_out))
}

/// One read; returns whether the pipe reached EOF.
fn read_some<R: Read>(
    pipe: &mut Option<R>,
    into: &mut Vec<u8>,
    chunk: &mut [u8],
) -> std::io::Result<bool> {
    let Some(reader) = pipe else { return Ok(true) };
    match reader.read(chunk) {
        Ok(0) => Ok(true),
        Ok(n) => {
            into.extend_from_slice(&chunk[..n]);
            Ok(false)
        }
        Err(e) if e.kind() == ErrorKind::Interrupted => Ok(false),
        Err(e) => Err(e),
    }
}

/// What a helper program run by [`run_helper`] left: its exit and what it printed.
#[derive(Debug)]
pub struct HelperOutput {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// Runs a helper program other than the runtime (a network plugin, say) the way runtime commands
/// run: `input` on its stdin, both outputs read while `waiter` keeps reaping, killed with its
/// process group after `timeout`. `input` must fit a pipe's buffer (64 KiB): it is written before
/// anything is read.
pub fn run_helper(
    command: &mut Command,
    input: &[u8],
    waiter: &mut dyn ExitWaiter,
    timeout: Duration,
) -> std::io::Result<HelperOutput> {
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    child_setup::prepare(command);
    std::os::unix::process::CommandExt::process_group(command, 0);
    let mut child = command.spawn()?;
    let pid = child.id() as i32;
    if let Some(mut stdin) = child.stdin.take() {
        // A helper that exits without reading its input is seen by its exit status.
        let _ = stdin.write_all(input);
    }
    let kill = || {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    };
    let deadline = Instant::now().checked_add(timeout);
    let (stdout, stderr, mut timed_out) = read_both(
        child.stdout.take(),
        child.stderr.take(),
        waiter,
        deadline,
        kill,
    )?;
    let left = deadline.map_or(timeout, |d| d.saturating_duration_since(Instant::now()));
    let status = match waiter.wait_timeout(pid, left)? {
        Some(status) => status,
        None => {
            timed_out = true;
            kill();
            waiter.wait(pid)?
        }
    };
    if timed_out {
        return Err(std::io::Error::new(
            ErrorKind::TimedOut,
            format!("still running after {}s; killed", timeout.as_secs()),
        ));
    }
    Ok(HelperOutput {
        status,
        stdout,
        stderr,
    })
}
