//! The Task calls, answered by the core: what each does to the container and its processes, in
//! containerd's terms (its error kinds, statuses and events). Making and starting processes is in
//! [`super::spawn`].

use super::mounts::unmount_rootfs;
use super::{Container, Core, Proc};
use crate::daemon::ReaperWait;
use crate::front::ttrpc::calls::{to_ttrpc, Call};
use crate::front::ttrpc::events::{timestamp, Event};
use crate::sys::set_window;
use containerd_shim_protos::api::*;
use containerd_shim_protos::events::task as ev;
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::Message;
use containerd_shim_protos::shim::oci::ProcessDetails;
use shim_core::lifecycle::{self, DeletePlan};
use shim_core::{Error, ExecId, Exit, ProcessKey, Result};
use shim_runc::{DeleteOptions, KillOptions};
use std::collections::HashMap;
use std::path::Path;
use std::time::SystemTime;

fn not_found(what: impl std::fmt::Display) -> Error {
    Error::not_found(format!("{what}: not found"))
}

/// The process a request names: containerd's `""` is the init.
pub(crate) fn process_key(exec_id: &str) -> Result<ProcessKey> {
    if exec_id.is_empty() {
        Ok(ProcessKey::Init)
    } else {
        ExecId::new(exec_id).map(ProcessKey::Exec)
    }
}

impl Core {
    /// Answers one call.
    pub fn handle(&mut self, call: Call) {
        self.diag.debug(format_args!("call {}", call_name(&call)));
        match call {
            Call::State(r, a) => drop(a.send(to_ttrpc(self.state(r)))),
            Call::Create(r, a) => drop(a.send(to_ttrpc(self.create(r)))),
            Call::Start(r, a) => drop(a.send(to_ttrpc(self.start(r)))),
            Call::Delete(r, a) => drop(a.send(to_ttrpc(self.delete(r)))),
            Call::Pids(r, a) => drop(a.send(to_ttrpc(self.pids(r)))),
            Call::Pause(r, a) => drop(a.send(to_ttrpc(self.pause_resume(&r.id, true)))),
            Call::Resume(r, a) => drop(a.send(to_ttrpc(self.pause_resume(&r.id, false)))),
            Call::Kill(r, a) => drop(a.send(to_ttrpc(self.kill(r)))),
            Call::Exec(r, a) => drop(a.send(to_ttrpc(self.exec(r)))),
            Call::ResizePty(r, a) => drop(a.send(to_ttrpc(self.resize(r)))),
            Call::CloseIo(r, a) => drop(a.send(to_ttrpc(self.close_io(r)))),
            Call::Update(r, a) => drop(a.send(to_ttrpc(self.update(r)))),
            Call::Wait(r, a) => match self.proc_mut(&r.id, &r.exec_id) {
                Ok(proc) if proc.exit.is_some() => drop(a.send(Ok(proc.wait_response()))),
                Ok(proc) => proc.waiters.push(a),
                Err(e) => drop(a.send(to_ttrpc(Err(e)))),
            },
            Call::Stats(r, a) => drop(a.send(to_ttrpc(self.stats(r)))),
            Call::Connect(r, a) => drop(a.send(to_ttrpc(self.connect(r)))),
            Call::Shutdown(r, a) => drop(a.send(to_ttrpc(self.shutdown(r)))),
        }
    }

    pub(crate) fn container(&self, id: &str) -> Result<&Container> {
        match &self.container {
            Some(container) if id == self.id => Ok(container),
            _ => Err(not_found(format!("container {id}"))),
        }
    }

    pub(crate) fn container_mut(&mut self, id: &str) -> Result<&mut Container> {
        match &mut self.container {
            Some(container) if id == self.id => Ok(container),
            _ => Err(not_found(format!("container {id}"))),
        }
    }

    pub(crate) fn proc_mut(&mut self, id: &str, exec_id: &str) -> Result<&mut Proc> {
        let key = process_key(exec_id)?;
        let container = self.container_mut(id)?;
        match key {
            ProcessKey::Init => Ok(&mut container.init),
            ProcessKey::Exec(exec_id) => container
                .execs
                .get_mut(&exec_id)
                .ok_or_else(|| not_found(format!("process {exec_id}"))),
        }
    }

    pub(crate) fn proc(&self, id: &str, exec_id: &str) -> Result<&Proc> {
        let key = process_key(exec_id)?;
        let container = self.container(id)?;
        match key {
            ProcessKey::Init => Ok(&container.init),
            ProcessKey::Exec(exec_id) => container
                .execs
                .get(&exec_id)
                .ok_or_else(|| not_found(format!("process {exec_id}"))),
        }
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
        if let Some(exit) = proc.exit {
            response.exit_status = exit.code() as u32;
            response.exited_at = Some(timestamp(exit.reaped_at)).into();
        }
        Ok(response)
    }

    pub(crate) fn kill(&mut self, r: KillRequest) -> Result<Empty> {
        let signal = i32::try_from(r.signal)
            .ok()
            .filter(|s| (1..=64).contains(s))
            .ok_or_else(|| Error::bad_request(format!("signal {} is not a signal", r.signal)))?;
        let container = self.container(&r.id)?;
        let proc = self.proc(&r.id, &r.exec_id)?;
        lifecycle::check_signal(&proc.key, proc.phase())?;
        if !proc.key.is_init() {
            // A pid this shim reaps: it cannot have been reused while the exit is not recorded.
            if crate::sys::kill(proc.pid, signal).is_err() {
                return Err(Error::not_found("process already finished"));
            }
            return Ok(Empty::new());
        }
        let runc = container.runc.clone();
        self.reap_needed = true;
        runc.kill(
            &r.id,
            KillOptions::new(signal).all(r.all),
            &mut ReaperWait(&mut self.reaper),
        )?;
        Ok(Empty::new())
    }

    fn delete(&mut self, r: DeleteRequest) -> Result<DeleteResponse> {
        if !r.exec_id.is_empty() {
            return self.delete_exec(&r.id, &r.exec_id);
        }
        let container = self.container(&r.id)?;
        let plan = lifecycle::delete_plan(container.init.phase(), false)
            .map_err(|e| e.context(format!("container {}", r.id)))?;
        if plan == DeletePlan::RecordExitFirst {
            // Exited, its output still draining: the exit is recorded (and published) now.
            self.record_exit(&ProcessKey::Init);
        }
        let container = self.container(&r.id)?;
        let runc = container.runc.clone();
        self.reap_needed = true;
        if let Err(e) = runc.delete(
            &r.id,
            DeleteOptions {
                force: plan == DeletePlan::Force,
            },
            &mut ReaperWait(&mut self.reaper),
        ) {
            if !e.container_missing() {
                return Err(e.into());
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
        let mut init = container.init;
        if init.exit.is_none() {
            init.exited(Exit::forced(init.pid, SystemTime::now()));
        }
        let exit = init.exit.expect("recorded above");
        let (code, at) = (exit.code() as u32, exit.reaped_at);
        self.events.publish(Event::Delete(ev::TaskDelete {
            container_id: r.id.clone(),
            id: r.id.clone(),
            pid: init.pid as u32,
            exit_status: code,
            exited_at: Some(timestamp(at)).into(),
            ..Default::default()
        }));
        self.diag.info(format_args!("container {} deleted", r.id));
        Ok(DeleteResponse {
            pid: init.pid as u32,
            exit_status: code,
            exited_at: Some(timestamp(at)).into(),
            ..Default::default()
        })
    }

    fn delete_exec(&mut self, id: &str, exec_id: &str) -> Result<DeleteResponse> {
        let proc = self.proc(id, exec_id)?;
        let key = proc.key.clone();
        let plan = lifecycle::delete_plan(proc.phase(), false)
            .map_err(|e| e.context(format!("process {exec_id}")))?;
        if plan == DeletePlan::RecordExitFirst {
            self.record_exit(&key);
        }
        let ProcessKey::Exec(exec_id) = key else {
            return Err(Error::bad_request("the init is deleted with its container"));
        };
        let container = self.container_mut(id)?;
        let proc = container.execs.remove(&exec_id).expect("checked above");
        for n in proc.outputs.iter().copied().chain(proc.input) {
            self.close_relay(n);
        }
        // An exec never started has no exit: 0, as containerd's own shim reports it.
        let (code, at) = proc.exit.map_or((0, SystemTime::now()), |exit| {
            (exit.code() as u32, exit.reaped_at)
        });
        Ok(DeleteResponse {
            pid: proc.pid as u32,
            exit_status: code,
            exited_at: Some(timestamp(at)).into(),
            ..Default::default()
        })
    }

    pub(crate) fn pids(&mut self, r: PidsRequest) -> Result<PidsResponse> {
        let container = self.container(&r.id)?;
        let runc = container.runc.clone();
        let exec_of: HashMap<u32, String> = container
            .execs
            .iter()
            .filter(|(_, p)| p.pid > 0)
            .map(|(id, p)| (p.pid as u32, id.to_string()))
            .collect();
        self.reap_needed = true;
        let pids = runc.ps(&r.id, &mut ReaperWait(&mut self.reaper))?;
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

    pub(crate) fn pause_resume(&mut self, id: &str, pause: bool) -> Result<Empty> {
        let container = self.container(id)?;
        lifecycle::check_pause(container.init.phase(), pause)
            .map_err(|e| e.context(format!("container {id}")))?;
        let runc = container.runc.clone();
        self.reap_needed = true;
        let mut waiter = ReaperWait(&mut self.reaper);
        if pause {
            runc.pause(id, &mut waiter)?;
        } else {
            runc.resume(id, &mut waiter)?;
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
            .map_err(|e| Error::bad_request(format!("resources: {e}")))?;
        let runc = container.runc.clone();
        self.reap_needed = true;
        runc.update(&r.id, &resources, &mut ReaperWait(&mut self.reaper))?;
        Ok(Empty::new())
    }

    fn stats(&mut self, r: StatsRequest) -> Result<StatsResponse> {
        use containerd_shim_protos::cgroups::metrics::{
            CPUStat, CPUUsage, MemoryEntry, MemoryStat, Metrics, PidsStat,
        };
        let container = self.container(&r.id)?;
        if let Some(cgroup) = &container.cgroup {
            let stats = cgroup
                .metrics()
                .map_err(|e| Error::internal(format!("cgroup metrics: {e}")))?;
            return Ok(StatsResponse {
                stats: Some(stats).into(),
                ..Default::default()
            });
        }
        let runc = container.runc.clone();
        self.reap_needed = true;
        let stats = runc.stats(&r.id, &mut ReaperWait(&mut self.reaper))?;
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
            .map_err(|e| Error::internal(e.to_string()))?;
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
