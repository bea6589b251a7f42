//! The supervisor's operations on the container and its processes, in shim-core's terms: each
//! checks the lifecycle rules, calls the runtime when it must, and answers a [`shim_core::Error`].
//! Making and starting processes is in [`super::spawn`].

use super::gateway;
use super::mounts::unmount_rootfs;
use super::runtime::RUNTIME_TIMEOUT;
use super::{Container, Proc, Supervisor, WaitAnswer};
use crate::common::sys::set_window;
use shim_core::lifecycle::{self, DeletePlan, Phase};
use shim_core::{Error, Event, ExecId, Exit, ProcessKey, Result};
use shim_runc::{DeleteOptions, FailureKind, KillOptions};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

/// How long a forced delete waits for a killed init before it leaves the rest to the runtime.
const FORCED_EXIT_WAIT: Duration = Duration::from_secs(5);

/// What a delete removed: the process's pid and its exit (none for an exec never started).
#[derive(Debug, Clone, Copy)]
pub struct Deleted {
    pub pid: i32,
    pub exit: Option<Exit>,
}

impl Supervisor {
    pub(crate) fn container(&self) -> Result<&Container> {
        self.container
            .as_ref()
            .ok_or_else(|| Error::not_found(format!("container {}: not found", self.id)))
    }

    pub(crate) fn container_mut(&mut self) -> Result<&mut Container> {
        let id = &self.id;
        self.container
            .as_mut()
            .ok_or_else(|| Error::not_found(format!("container {id}: not found")))
    }

    /// A process of the container.
    pub fn process(&self, key: &ProcessKey) -> Result<&Proc> {
        let container = self.container()?;
        match key {
            ProcessKey::Init => Ok(&container.init),
            ProcessKey::Exec(id) => container
                .execs
                .get(id)
                .ok_or_else(|| Error::not_found(format!("process {id}: not found"))),
        }
    }

    pub(crate) fn process_mut(&mut self, key: &ProcessKey) -> Result<&mut Proc> {
        let container = self.container_mut()?;
        match key {
            ProcessKey::Init => Ok(&mut container.init),
            ProcessKey::Exec(id) => container
                .execs
                .get_mut(id)
                .ok_or_else(|| Error::not_found(format!("process {id}: not found"))),
        }
    }

    /// The container's bundle directory.
    pub fn bundle(&self) -> Result<&str> {
        Ok(&self.container()?.bundle)
    }

    /// Answers `answer` with the process's exit: now if it is recorded, else when it is.
    pub fn wait(&mut self, key: &ProcessKey, answer: WaitAnswer) -> Result<()> {
        let proc = self.process_mut(key)?;
        match proc.exit {
            Some(exit) => answer(exit),
            None => proc.waiters.push(answer),
        }
        Ok(())
    }

    /// Sends signal `signal` (1 to 64) to a process; `all`: to every process of the container.
    pub fn kill(&mut self, key: &ProcessKey, signal: u32, all: bool) -> Result<()> {
        let signal = i32::try_from(signal)
            .ok()
            .filter(|s| (1..=64).contains(s))
            .ok_or_else(|| Error::bad_request(format!("signal {signal} is not a signal")))?;
        let proc = self.process(key)?;
        lifecycle::check_signal(&proc.key, proc.phase())?;
        if !key.is_init() {
            // A pid this shim reaps: it cannot have been reused while the exit is not recorded.
            return crate::common::sys::kill(proc.pid, signal)
                .map_err(|_| Error::not_found("process already finished"));
        }
        let runc = self.container()?.runc.clone();
        let id = self.id.clone();
        self.runtime(|wait| runc.kill(&id, KillOptions::new(signal).all(all), wait))
    }

    /// Removes a process: an exec, or the init with the whole container.
    pub fn delete(&mut self, key: &ProcessKey) -> Result<Deleted> {
        let ProcessKey::Exec(exec_id) = key else {
            return self.delete_container(false);
        };
        let proc = self.process(key)?;
        let plan =
            lifecycle::delete_plan(proc.phase(), false).map_err(|e| e.context(format!("{key}")))?;
        if plan == DeletePlan::RecordExitFirst {
            self.record_exit(key);
        }
        let container = self.container_mut()?;
        let proc = container.execs.remove(exec_id).expect("looked up above");
        for n in proc.relays() {
            self.close_relay(n);
        }
        Ok(Deleted {
            pid: proc.pid,
            exit: proc.exit,
        })
    }

    /// Removes the container; `force`: a running one too (killed first, as `runc delete --force`).
    pub fn delete_container(&mut self, force: bool) -> Result<Deleted> {
        let id = self.id.clone();
        let plan = lifecycle::delete_plan(self.container()?.init.phase(), force)
            .map_err(|e| e.context(format!("container {id}")))?;
        if plan == DeletePlan::RecordExitFirst {
            // Exited, its output still draining: the exit is recorded (and published) now.
            self.record_exit(&ProcessKey::Init);
        }
        let runc = self.container()?.runc.clone();
        // runc's own `delete --force` kills, then looks every 100 ms whether the init is gone
        // (about 105 ms a container with runc 1.1). The shim reaps the init itself: it kills and
        // awaits the exit, then deletes a stopped container. A paused container, or one whose
        // init would not die in time, goes the runtime's way.
        let killed = plan == DeletePlan::Force
            && matches!(
                self.container()?.init.phase(),
                Phase::Created | Phase::Running
            )
            && self.kill_and_await_init(&runc);
        let force = plan == DeletePlan::Force && !killed;
        let mut deleted = self.runtime_raw(|wait| runc.delete(&id, DeleteOptions { force }, wait));
        if killed
            && deleted
                .as_ref()
                .is_err_and(|e| e.kind() != FailureKind::ContainerMissing)
        {
            let forced = DeleteOptions { force: true };
            deleted = self.runtime_raw(|wait| runc.delete(&id, forced, wait));
        }
        if let Err(e) = deleted {
            if e.kind() != FailureKind::ContainerMissing {
                return Err(gateway::failure(e));
            }
        }
        if plan == DeletePlan::Force {
            self.record_forced_exit();
        }
        self.release_network();
        let container = self.container.take().expect("looked up above");
        if let Some(record) = &mut self.record {
            record.remove();
        }
        let relays: Vec<usize> = container.procs().flat_map(Proc::relays).collect();
        for n in relays {
            self.close_relay(n);
        }
        if container.rootfs_mounted {
            unmount_rootfs(&Path::new(&container.bundle).join("rootfs"));
        }
        let mut init = container.init;
        if init.exit.is_none() {
            init.exited(Exit::forced(init.pid, SystemTime::now()));
        }
        let exit = init.exit.expect("recorded above");
        self.events.publish(
            &id,
            Event::Deleted {
                pid: init.pid,
                exit,
            },
        );
        self.diag.info(format_args!("container {id} deleted"));
        Ok(Deleted {
            pid: init.pid,
            exit: Some(exit),
        })
    }

    /// Kills every process of the container and waits (bounded) for the init's exit, kept as its
    /// pending exit; returns whether the init is gone.
    fn kill_and_await_init(&mut self, runc: &shim_runc::Runc) -> bool {
        let id = self.id.clone();
        let all = KillOptions::new(9).all(true);
        if self.runtime_raw(|wait| runc.kill(&id, all, wait)).is_err() {
            return false;
        }
        let Ok(init) = self.process(&ProcessKey::Init) else {
            return false;
        };
        if init.pending_exit.is_some() || init.exit.is_some() {
            return true;
        }
        let pid = init.pid;
        match self.reaper.wait_for(pid, FORCED_EXIT_WAIT) {
            Ok(exit) => {
                if let Ok(init) = self.process_mut(&ProcessKey::Init) {
                    init.pending_exit = Some(super::pending_exit(exit, &ProcessKey::Init));
                }
                true
            }
            Err(_) => false,
        }
    }

    /// The processes of a container removed by force are dying: their exits are recorded (their
    /// output closed, their waiters answered), the execs' first, before the container goes. Each is
    /// the reaped one, or, should the kernel not deliver it in time, SIGKILL's.
    fn record_forced_exit(&mut self) {
        // What came while the runtime removed the container.
        self.reap();
        let Ok(container) = self.container() else {
            return;
        };
        let dying: Vec<ProcessKey> = container
            .execs
            .values()
            .filter(|p| p.exit.is_none() && p.pid > 0)
            .map(|p| p.key.clone())
            .chain(container.init.exit.is_none().then_some(ProcessKey::Init))
            .collect();
        for key in dying {
            let Ok(proc) = self.process(&key) else {
                continue;
            };
            let pid = proc.pid;
            let exit = match proc.pending_exit {
                Some(pending) => pending.exit,
                None => self
                    .reaper
                    .wait_for(pid, RUNTIME_TIMEOUT)
                    .unwrap_or_else(|_| Exit::forced(pid, SystemTime::now())),
            };
            if let Ok(proc) = self.process_mut(&key) {
                proc.pending_exit = Some(super::pending_exit(exit, &key));
            }
            self.record_exit(&key);
        }
    }

    /// SIGKILLs a process and everything it started (an exec past its timeout).
    /// Gives a process a time to run: past it, it is killed with everything it started, and its
    /// exit says so ([`Proc::timed_out`]). A time past what an `Instant` holds is no limit.
    pub fn set_deadline(&mut self, key: &ProcessKey, limit: Duration) -> Result<()> {
        let proc = self.process_mut(key)?;
        proc.deadline = Instant::now().checked_add(limit).map(|at| (at, limit));
        Ok(())
    }

    /// Kills the processes past their time.
    pub(crate) fn kill_overdue(&mut self) {
        let Some(container) = &mut self.container else {
            return;
        };
        let now = Instant::now();
        let mut overdue = Vec::new();
        for proc in std::iter::once(&mut container.init).chain(container.execs.values_mut()) {
            if let Some((_, limit)) = proc.deadline.filter(|(at, _)| *at <= now) {
                proc.deadline = None;
                proc.timed_out = true;
                overdue.push((proc.key.clone(), limit));
            }
        }
        for (key, limit) in overdue {
            self.diag.info(format_args!(
                "{key} ran past its time of {limit:?}; killing it"
            ));
            let _ = self.kill_tree(&key);
        }
    }

    pub fn kill_tree(&mut self, key: &ProcessKey) -> Result<()> {
        let proc = self.process(key)?;
        if proc.pid > 0 && proc.phase() == Phase::Running {
            kill_tree(proc.pid);
        }
        Ok(())
    }

    /// The container's processes, each with its exec id when it is one of the execs.
    pub fn pids(&mut self) -> Result<Vec<(i32, Option<ExecId>)>> {
        let id = self.id.clone();
        let container = self.container()?;
        lifecycle::check_pids(container.init.phase())
            .map_err(|e| e.context(format!("container {id}")))?;
        let runc = container.runc.clone();
        let exec_of: Vec<(i32, ExecId)> = container
            .execs
            .iter()
            .filter(|(_, p)| p.pid > 0)
            .map(|(id, p)| (p.pid, id.clone()))
            .collect();
        let pids = self.runtime(|wait| runc.ps(&id, wait))?;
        Ok(pids
            .into_iter()
            .map(|pid| {
                let exec = exec_of.iter().find(|(p, _)| *p == pid).map(|(_, id)| id);
                (pid, exec.cloned())
            })
            .collect())
    }

    /// Freezes (`pause`) or thaws the container.
    pub fn pause(&mut self, pause: bool) -> Result<()> {
        let id = self.id.clone();
        let container = self.container()?;
        lifecycle::check_pause(container.init.phase(), pause)
            .map_err(|e| e.context(format!("container {id}")))?;
        let runc = container.runc.clone();
        self.runtime(|wait| {
            if pause {
                runc.pause(&id, wait)
            } else {
                runc.resume(&id, wait)
            }
        })?;
        let init = &mut self.container_mut()?.init;
        if init.exit.is_none() {
            init.state = if pause { Phase::Paused } else { Phase::Running };
        }
        self.events
            .publish(&id, if pause { Event::Paused } else { Event::Resumed });
        Ok(())
    }

    /// Sets a process's terminal size (nothing without a terminal).
    pub fn resize(&mut self, key: &ProcessKey, rows: u16, cols: u16) -> Result<()> {
        if let Some(terminal) = &self.process(key)?.terminal {
            set_window(terminal, rows, cols);
        }
        Ok(())
    }

    /// Ends a process's stdin once what its client wrote is passed on.
    pub fn close_stdin(&mut self, key: &ProcessKey) -> Result<()> {
        if let Some(n) = self.process(key)?.input {
            self.copier.close_input(self.poll.registry(), n);
        }
        Ok(())
    }

    /// Changes the container's resources (`runc update`).
    pub fn update(&mut self, resources: &oci_spec::runtime::LinuxResources) -> Result<()> {
        let runc = self.container()?.runc.clone();
        let id = self.id.clone();
        self.runtime(|wait| runc.update(&id, resources, wait))
    }

    /// The container's cgroup, when it was found (metrics are read from its files).
    pub fn cgroup(&self) -> Result<Option<&super::Cgroup>> {
        Ok(self.container()?.cgroup.as_ref())
    }

    /// The runtime's own figures (`runc events --stats`), for a container whose cgroup is unknown.
    pub fn runtime_stats(&mut self) -> Result<shim_runc::Stats> {
        let runc = self.container()?.runc.clone();
        let id = self.id.clone();
        self.runtime(|wait| runc.stats(&id, wait))
    }

    /// The init's pid, once the container is created.
    pub fn init_pid(&self) -> Option<i32> {
        self.container.as_ref().map(|c| c.init.pid)
    }

    /// Stops serving: at once with `now`, else only when no container is left (it stays until
    /// the container is deleted).
    pub fn shutdown(&mut self, now: bool) {
        if self.container.is_none() || now {
            self.done = true;
        }
    }
}

/// SIGKILLs `pid` and every descendant of it (found through /proc, repeated until none is left or
/// a few rounds passed, since the tree can change while it is being walked).
pub fn kill_tree(pid: i32) {
    use nix::sys::signal::{kill, Signal};
    for _ in 0..5 {
        let tree = descendants_and_self(pid);
        if tree.is_empty() {
            return;
        }
        for member in &tree {
            let _ = kill(nix::unistd::Pid::from_raw(*member), Signal::SIGKILL);
        }
    }
}

fn descendants_and_self(root: i32) -> Vec<i32> {
    let mut tree = Vec::new();
    if !std::path::Path::new(&format!("/proc/{root}")).exists() {
        return tree;
    }
    tree.push(root);
    let mut index = 0;
    while index < tree.len() {
        let pid = tree[index];
        if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
            for task in tasks.flatten() {
                let children =
                    std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
                tree.extend(
                    children
                        .split_whitespace()
                        .filter_map(|c| c.parse::<i32>().ok()),
                );
            }
        }
        index += 1;
    }
    tree
}
