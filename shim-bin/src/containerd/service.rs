//! The ttrpc front end: `containerd.task.v2.Task`. The ttrpc server answers on its own threads;
//! each call is handed to the single-threaded core as a [`Call`] and the thread waits for the
//! core's answer (a `Wait` waits until the process exits). The core is the only owner of processes,
//! pipes and the reaper.

use containerd_shim_protos::api::*;
use containerd_shim_protos::ttrpc::{self, Code, TtrpcContext};
use containerd_shim_protos::Task;
use std::sync::mpsc::{sync_channel, Sender, SyncSender};
use std::sync::Arc;

/// Where the core sends one call's answer.
pub type Answer<T> = SyncSender<ttrpc::Result<T>>;

/// One request for the core, with where its answer goes.
#[derive(Debug)]
pub enum Call {
    State(StateRequest, Answer<StateResponse>),
    Create(CreateTaskRequest, Answer<CreateTaskResponse>),
    Start(StartRequest, Answer<StartResponse>),
    Delete(DeleteRequest, Answer<DeleteResponse>),
    Pids(PidsRequest, Answer<PidsResponse>),
    Pause(PauseRequest, Answer<Empty>),
    Resume(ResumeRequest, Answer<Empty>),
    Kill(KillRequest, Answer<Empty>),
    Exec(ExecProcessRequest, Answer<Empty>),
    ResizePty(ResizePtyRequest, Answer<Empty>),
    CloseIo(CloseIORequest, Answer<Empty>),
    Update(UpdateTaskRequest, Answer<Empty>),
    Wait(WaitRequest, Answer<WaitResponse>),
    Stats(StatsRequest, Answer<StatsResponse>),
    Connect(ConnectRequest, Answer<ConnectResponse>),
    Shutdown(ShutdownRequest, Answer<Empty>),
}

/// A ttrpc error status containerd maps to its own error kinds.
pub fn status(code: Code, message: impl ToString) -> ttrpc::Error {
    ttrpc::Error::RpcStatus(ttrpc::get_status(code, message))
}

/// The Task service: forwards every call to the core.
pub struct TaskService {
    calls: Sender<Call>,
    waker: Arc<mio::Waker>,
}

impl TaskService {
    pub fn new(calls: Sender<Call>, waker: Arc<mio::Waker>) -> TaskService {
        TaskService { calls, waker }
    }

    fn ask<T>(&self, make: impl FnOnce(Answer<T>) -> Call) -> ttrpc::Result<T> {
        let gone = || status(Code::UNAVAILABLE, "the shim is shutting down");
        let (answer, answered) = sync_channel(1);
        self.calls.send(make(answer)).map_err(|_| gone())?;
        self.waker.wake().map_err(|_| gone())?;
        answered.recv().map_err(|_| gone())?
    }
}

impl Task for TaskService {
    fn state(&self, _: &TtrpcContext, r: StateRequest) -> ttrpc::Result<StateResponse> {
        self.ask(|a| Call::State(r, a))
    }
    fn create(&self, _: &TtrpcContext, r: CreateTaskRequest) -> ttrpc::Result<CreateTaskResponse> {
        self.ask(|a| Call::Create(r, a))
    }
    fn start(&self, _: &TtrpcContext, r: StartRequest) -> ttrpc::Result<StartResponse> {
        self.ask(|a| Call::Start(r, a))
    }
    fn delete(&self, _: &TtrpcContext, r: DeleteRequest) -> ttrpc::Result<DeleteResponse> {
        self.ask(|a| Call::Delete(r, a))
    }
    fn pids(&self, _: &TtrpcContext, r: PidsRequest) -> ttrpc::Result<PidsResponse> {
        self.ask(|a| Call::Pids(r, a))
    }
    fn pause(&self, _: &TtrpcContext, r: PauseRequest) -> ttrpc::Result<Empty> {
        self.ask(|a| Call::Pause(r, a))
    }
    fn resume(&self, _: &TtrpcContext, r: ResumeRequest) -> ttrpc::Result<Empty> {
        self.ask(|a| Call::Resume(r, a))
    }
    fn checkpoint(&self, _: &TtrpcContext, _: CheckpointTaskRequest) -> ttrpc::Result<Empty> {
        Err(status(
            Code::UNIMPLEMENTED,
            "checkpoint is not implemented by tether",
        ))
    }
    fn kill(&self, _: &TtrpcContext, r: KillRequest) -> ttrpc::Result<Empty> {
        self.ask(|a| Call::Kill(r, a))
    }
    fn exec(&self, _: &TtrpcContext, r: ExecProcessRequest) -> ttrpc::Result<Empty> {
        self.ask(|a| Call::Exec(r, a))
    }
    fn resize_pty(&self, _: &TtrpcContext, r: ResizePtyRequest) -> ttrpc::Result<Empty> {
        self.ask(|a| Call::ResizePty(r, a))
    }
    fn close_io(&self, _: &TtrpcContext, r: CloseIORequest) -> ttrpc::Result<Empty> {
        self.ask(|a| Call::CloseIo(r, a))
    }
    fn update(&self, _: &TtrpcContext, r: UpdateTaskRequest) -> ttrpc::Result<Empty> {
        self.ask(|a| Call::Update(r, a))
    }
    fn wait(&self, _: &TtrpcContext, r: WaitRequest) -> ttrpc::Result<WaitResponse> {
        self.ask(|a| Call::Wait(r, a))
    }
    fn stats(&self, _: &TtrpcContext, r: StatsRequest) -> ttrpc::Result<StatsResponse> {
        self.ask(|a| Call::Stats(r, a))
    }
    fn connect(&self, _: &TtrpcContext, r: ConnectRequest) -> ttrpc::Result<ConnectResponse> {
        self.ask(|a| Call::Connect(r, a))
    }
    fn shutdown(&self, _: &TtrpcContext, r: ShutdownRequest) -> ttrpc::Result<Empty> {
        self.ask(|a| Call::Shutdown(r, a))
    }
}
