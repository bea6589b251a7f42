//! The Task methods containerd's door serves: each request becomes a [`Job`] for the supervisor's
//! thread ([`job`]), with the [`Answer`] that takes its result back to the wire (see
//! [`super::door`]). Each method maps its request to the supervisor's operations and their results
//! (shim-core types) back to containerd's messages. A `Wait` is answered when the process exits.

use super::metrics;
use super::options;
use crate::shim::{CreateSpec, Job, Supervisor};
use containerd_shim_protos::api::*;
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim_protos::protobuf::Message;
use containerd_shim_protos::shim::oci::ProcessDetails;
use containerd_shim_protos::ttrpc::{self, Code};
use shim_core::lifecycle::Phase;
use shim_core::{Error, ExecId, Exit, ProcessKey, Result, RootfsMount, StdioPaths};
use std::time::SystemTime;

/// Where the core sends one call's answer: given once, from the core's thread (the door drops
/// answers for clients that left).
pub type Answer<T> = Box<dyn FnOnce(ttrpc::Result<T>) + Send>;

/// What one Task method does with its request on the supervisor's thread.
pub type Handler<Req, Resp> = fn(&mut Supervisor, Req) -> Result<Resp>;

/// The job that answers one request of `method` (its protobuf `payload`) with `handler`, or the
/// error answer to a request that does not decode.
pub fn job<Req, Resp>(
    method: &str,
    payload: &[u8],
    handler: Handler<Req, Resp>,
    answer: Answer<Resp>,
) -> ttrpc::Result<Job>
where
    Req: Message + Send + 'static,
    Resp: 'static,
{
    let request = decode::<Req>(method, payload)?;
    let method = method.to_owned();
    Ok(Box::new(move |supervisor| {
        supervisor.diag.debug(format_args!("call {method}"));
        answer(to_ttrpc(handler(supervisor, request)));
    }))
}

/// The job that answers a Wait once the process has exited (at once, when it has).
pub fn wait_job(payload: &[u8], answer: Answer<WaitResponse>) -> ttrpc::Result<Job> {
    let r = decode::<WaitRequest>("Wait", payload)?;
    Ok(Box::new(move |s| {
        s.diag.debug(format_args!("call Wait"));
        let key = ours(s, &r.id)
            .and_then(|()| process_key(&r.exec_id))
            .and_then(|key| s.process(&key).map(|_| key));
        match key {
            Ok(key) => {
                let answer = Box::new(move |exit| answer(Ok(wait_response(Some(exit)))));
                // The process is there (looked up above): waiting cannot fail.
                let _ = s.wait(&key, answer);
            }
            Err(e) => answer(to_ttrpc(Err(e))),
        }
    }))
}

fn decode<Req: Message>(method: &str, payload: &[u8]) -> ttrpc::Result<Req> {
    Req::parse_from_bytes(payload).map_err(|e| {
        status(
            Code::INVALID_ARGUMENT,
            format!("{method}: malformed request: {e}"),
        )
    })
}

/// A ttrpc error status containerd maps to its own error kinds.
pub fn status(code: Code, message: impl ToString) -> ttrpc::Error {
    ttrpc::Error::RpcStatus(ttrpc::get_status(code, message))
}

/// The one conversion of the supervisor's error to containerd's wire: the status codes
/// containerd's errdefs map back to its own kinds.
pub fn to_ttrpc<T>(result: shim_core::Result<T>) -> ttrpc::Result<T> {
    use shim_core::ErrorKind as Kind;
    result.map_err(|error| {
        let code = match error.kind {
            Kind::NotFound => Code::NOT_FOUND,
            Kind::AlreadyExists => Code::ALREADY_EXISTS,
            Kind::InvalidState => Code::FAILED_PRECONDITION,
            Kind::BadRequest => Code::INVALID_ARGUMENT,
            Kind::Exhausted => Code::RESOURCE_EXHAUSTED,
            Kind::Unsupported => Code::UNIMPLEMENTED,
            Kind::Runtime { .. } => Code::UNKNOWN,
            Kind::Internal => Code::INTERNAL,
        };
        status(code, error.message)
    })
}

/// A protobuf timestamp.
pub fn timestamp(at: SystemTime) -> Timestamp {
    let since = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let mut stamp = Timestamp::new();
    stamp.seconds = since.as_secs() as i64;
    stamp.nanos = since.subsec_nanos() as i32;
    stamp
}

/// The process a request names: containerd's `""` is the init.
fn process_key(exec_id: &str) -> Result<ProcessKey> {
    if exec_id.is_empty() {
        Ok(ProcessKey::Init)
    } else {
        ExecId::new(exec_id).map(ProcessKey::Exec)
    }
}

/// A request's container id must be the one this shim serves.
fn ours(supervisor: &Supervisor, id: &str) -> Result<()> {
    if id == supervisor.id {
        Ok(())
    } else {
        Err(Error::not_found(format!("container {id}: not found")))
    }
}

fn wait_response(exit: Option<Exit>) -> WaitResponse {
    let mut response = WaitResponse::new();
    if let Some(exit) = exit {
        response.exit_status = exit.code() as u32;
        response.exited_at = Some(timestamp(exit.reaped_at)).into();
    }
    response
}

fn task_status(phase: Phase) -> Status {
    match phase {
        Phase::Created => Status::CREATED,
        // Reaped, output still on its way: running until the exit is recorded.
        Phase::Running | Phase::Exiting => Status::RUNNING,
        Phase::Paused => Status::PAUSED,
        Phase::Exited => Status::STOPPED,
    }
}

pub fn pause(s: &mut Supervisor, r: PauseRequest) -> Result<Empty> {
    ours(s, &r.id)?;
    s.pause(true).map(|()| Empty::new())
}

pub fn resume(s: &mut Supervisor, r: ResumeRequest) -> Result<Empty> {
    ours(s, &r.id)?;
    s.pause(false).map(|()| Empty::new())
}

/// Answered whatever the id, as containerd's own shim does: it asks before it knows.
pub fn connect(s: &mut Supervisor, r: ConnectRequest) -> Result<ConnectResponse> {
    Ok(ConnectResponse {
        shim_pid: std::process::id(),
        task_pid: (r.id == s.id).then(|| s.init_pid()).flatten().unwrap_or(0) as u32,
        version: env!("CARGO_PKG_VERSION").to_owned(),
        ..Default::default()
    })
}

pub fn shutdown(s: &mut Supervisor, r: ShutdownRequest) -> Result<Empty> {
    s.shutdown(r.now);
    Ok(Empty::new())
}

pub fn state(s: &mut Supervisor, r: StateRequest) -> Result<StateResponse> {
    ours(s, &r.id)?;
    let key = process_key(&r.exec_id)?;
    let bundle = s.bundle()?.to_owned();
    let proc = s.process(&key)?;
    let paths = proc.stdio.paths();
    let mut response = StateResponse {
        id: if r.exec_id.is_empty() {
            r.id.clone()
        } else {
            r.exec_id.clone()
        },
        exec_id: r.exec_id,
        bundle,
        pid: proc.pid as u32,
        status: task_status(proc.phase()).into(),
        stdin: paths.stdin,
        stdout: paths.stdout,
        stderr: paths.stderr,
        terminal: paths.terminal,
        ..Default::default()
    };
    if let Some(exit) = proc.exit {
        response.exit_status = exit.code() as u32;
        response.exited_at = Some(timestamp(exit.reaped_at)).into();
    }
    Ok(response)
}

pub fn create(s: &mut Supervisor, r: CreateTaskRequest) -> Result<CreateTaskResponse> {
    if r.id != s.id {
        return Err(Error::bad_request(format!(
            "this shim serves container {}, not {}",
            s.id, r.id
        )));
    }
    if !r.checkpoint.is_empty() {
        return Err(Error::unsupported(
            "restoring from a checkpoint is not implemented by tether",
        ));
    }
    let runtime_options = options::from_request(r.options.as_ref(), s.default_options.clone())
        .map_err(Error::bad_request)?;
    if let Some(foreign) = options::foreign_type(r.options.as_ref()) {
        s.diag.info(format_args!(
            "runtime options of type {foreign} carry nothing tether uses; runc defaults apply"
        ));
    }
    let spec = CreateSpec {
        bundle: r.bundle,
        rootfs: r
            .rootfs
            .into_iter()
            .map(|m| RootfsMount {
                kind: m.type_,
                source: m.source,
                options: m.options,
            })
            .collect(),
        stdio: StdioPaths {
            stdin: r.stdin,
            stdout: r.stdout,
            stderr: r.stderr,
            terminal: r.terminal,
        },
        options: runtime_options,
    };
    let pid = s.create(spec)?;
    Ok(CreateTaskResponse {
        pid: pid as u32,
        ..Default::default()
    })
}

pub fn start(s: &mut Supervisor, r: StartRequest) -> Result<StartResponse> {
    ours(s, &r.id)?;
    let pid = s.start(&process_key(&r.exec_id)?)?;
    Ok(StartResponse {
        pid: pid as u32,
        ..Default::default()
    })
}

pub fn delete(s: &mut Supervisor, r: DeleteRequest) -> Result<DeleteResponse> {
    ours(s, &r.id)?;
    let deleted = s.delete(&process_key(&r.exec_id)?)?;
    // An exec never started has no exit: 0, as containerd's own shim reports it.
    let (code, at) = deleted.exit.map_or((0, SystemTime::now()), |exit| {
        (exit.code() as u32, exit.reaped_at)
    });
    Ok(DeleteResponse {
        pid: deleted.pid as u32,
        exit_status: code,
        exited_at: Some(timestamp(at)).into(),
        ..Default::default()
    })
}

pub fn pids(s: &mut Supervisor, r: PidsRequest) -> Result<PidsResponse> {
    ours(s, &r.id)?;
    let processes = s
        .pids()?
        .into_iter()
        .map(|(pid, exec)| {
            let mut info = ProcessInfo::new();
            info.pid = pid as u32;
            if let Some(exec_id) = exec {
                let details = ProcessDetails {
                    exec_id: exec_id.to_string(),
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

pub fn kill(s: &mut Supervisor, r: KillRequest) -> Result<Empty> {
    ours(s, &r.id)?;
    s.kill(&process_key(&r.exec_id)?, r.signal, r.all)?;
    Ok(Empty::new())
}

pub fn exec(s: &mut Supervisor, r: ExecProcessRequest) -> Result<Empty> {
    ours(s, &r.id)?;
    let ProcessKey::Exec(exec_id) = process_key(&r.exec_id)? else {
        return Err(Error::bad_request("an exec needs an id"));
    };
    s.check_new_exec(&exec_id)?;
    let spec_bytes = r
        .spec
        .as_ref()
        .map(|any| any.value.as_slice())
        .unwrap_or_default();
    let process: oci_spec::runtime::Process = serde_json::from_slice(spec_bytes)
        .map_err(|e| Error::bad_request(format!("exec process spec: {e}")))?;
    let stdio = StdioPaths {
        stdin: r.stdin,
        stdout: r.stdout,
        stderr: r.stderr,
        terminal: r.terminal,
    };
    s.add_exec(exec_id, process, crate::shim::StdioPlan::Paths(stdio))?;
    Ok(Empty::new())
}

pub fn resize(s: &mut Supervisor, r: ResizePtyRequest) -> Result<Empty> {
    ours(s, &r.id)?;
    let rows = u16::try_from(r.height).unwrap_or(u16::MAX);
    let cols = u16::try_from(r.width).unwrap_or(u16::MAX);
    s.resize(&process_key(&r.exec_id)?, rows, cols)?;
    Ok(Empty::new())
}

pub fn close_io(s: &mut Supervisor, r: CloseIORequest) -> Result<Empty> {
    ours(s, &r.id)?;
    let key = process_key(&r.exec_id)?;
    if r.stdin {
        s.close_stdin(&key)?;
    } else {
        s.process(&key)?;
    }
    Ok(Empty::new())
}

pub fn update(s: &mut Supervisor, r: UpdateTaskRequest) -> Result<Empty> {
    ours(s, &r.id)?;
    s.process(&ProcessKey::Init)?;
    let bytes = r
        .resources
        .as_ref()
        .map(|any| any.value.as_slice())
        .unwrap_or_default();
    let resources: oci_spec::runtime::LinuxResources =
        serde_json::from_slice(bytes).map_err(|e| Error::bad_request(format!("resources: {e}")))?;
    s.update(&resources)?;
    Ok(Empty::new())
}

pub fn stats(s: &mut Supervisor, r: StatsRequest) -> Result<StatsResponse> {
    ours(s, &r.id)?;
    let stats = match s.cgroup()? {
        Some(cgroup) => metrics::of_cgroup(cgroup)
            .map_err(|e| Error::internal(format!("cgroup metrics: {e}")))?,
        None => metrics::of_runtime(&s.runtime_stats()?)?,
    };
    Ok(StatsResponse {
        stats: Some(stats).into(),
        ..Default::default()
    })
}
