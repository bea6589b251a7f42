//! The calls containerd's door hands the core: one [`Call`] per Task request, each with the
//! [`Answer`] that takes its result back to the wire (see [`super::door`]). The core is the only
//! owner of processes, pipes and the reaper; it answers a `Wait` when the process exits.

use containerd_shim_protos::api::*;
use containerd_shim_protos::ttrpc::{self, Code};

/// Where the core sends one call's answer: given once, from the core's thread.
pub struct Answer<T>(Box<dyn FnOnce(ttrpc::Result<T>) + Send>);

impl<T> Answer<T> {
    /// An answer that hands its result to `deliver`.
    pub fn new(deliver: impl FnOnce(ttrpc::Result<T>) + Send + 'static) -> Answer<T> {
        Answer(Box::new(deliver))
    }

    /// Gives the answer. (A `Result` like a channel's send, though it cannot fail: the door
    /// drops answers for clients that left.)
    pub fn send(self, result: ttrpc::Result<T>) -> Result<(), ()> {
        (self.0)(result);
        Ok(())
    }
}

impl<T> std::fmt::Debug for Answer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Answer")
    }
}

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
