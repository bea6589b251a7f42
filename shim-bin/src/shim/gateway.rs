//! The one way the supervisor calls its runtime (and the helpers it runs the same way, the CNI
//! plugins): every command is waited for through the reaper, so no exit is taken from the loop, and
//! its failure gets tether's meaning here. shim-runc says what kind of failure it was
//! ([`FailureKind`]); what a kind means to tether is decided below and nowhere else.

use super::runtime::ReaperWait;
use super::Supervisor;
use shim_core::{Error, ErrorKind, Result};
use shim_runc::{ExitWaiter, FailureKind};

impl Supervisor {
    /// Runs `call` (one runtime command), waited for through the reaper; a failure as tether
    /// reads it ([`failure`]).
    pub fn runtime<T>(
        &mut self,
        call: impl FnOnce(&mut dyn ExitWaiter) -> shim_runc::Result<T>,
    ) -> Result<T> {
        self.runtime_raw(call).map_err(failure)
    }

    /// The same, the failure left as it is: the runtime's, for a caller that acts on its kind,
    /// or a helper's (a CNI plugin run the same way).
    pub fn runtime_raw<T, E>(
        &mut self,
        call: impl FnOnce(&mut dyn ExitWaiter) -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E> {
        call(&mut ReaperWait(&mut self.reaper))
    }
}

/// A runtime's failure, as the supervisor's error: a process that is gone is containerd's
/// "process already finished" (not found); anything else is the runtime's failure, in its words.
pub fn failure(error: shim_runc::Error) -> Error {
    match error.kind() {
        FailureKind::ProcessFinished => {
            Error::not_found(format!("process already finished: {error}"))
        }
        _ => Error::runtime(error.to_string()),
    }
}

/// A runtime's failure to start a process, with the code a shell gives when the command itself
/// could not be run: 127 not found, 126 not runnable. `exec`: an exec, whose every start failure
/// is the command's (126 when nothing says which); an init's other failures carry no code.
pub fn start_failure(error: shim_runc::Error, exec: bool) -> Error {
    let code = match error.kind() {
        FailureKind::CommandNotFound => Some(127),
        FailureKind::CommandNotRunnable => Some(126),
        _ if exec => Some(126),
        _ => None,
    };
    Error::new(
        ErrorKind::Runtime {
            start_failure: code,
        },
        error.to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(message: &str) -> shim_runc::Error {
        shim_runc::Error::Failed {
            command: "runc exec web".into(),
            status: "exit status 1".into(),
            message: message.into(),
        }
    }

    #[test]
    fn a_process_gone_is_not_found_and_the_rest_is_the_runtimes() {
        assert_eq!(
            failure(failed("container not running")).kind,
            ErrorKind::NotFound
        );
        assert_eq!(
            failure(failed("cgroup: permission denied")).kind,
            ErrorKind::Runtime {
                start_failure: None
            }
        );
    }

    #[test]
    fn a_command_that_cannot_start_gets_a_shells_code() {
        let not_found = failed("exec: \"nope\": executable file not found in $PATH");
        let code = |e: Error| match e.kind {
            ErrorKind::Runtime { start_failure } => start_failure,
            _ => None,
        };
        assert_eq!(code(start_failure(not_found, false)), Some(127));
        assert_eq!(
            code(start_failure(
                failed("exec: \"/etc\": permission denied"),
                false
            )),
            Some(126)
        );
        assert_eq!(
            code(start_failure(failed("mount: no device"), true)),
            Some(126)
        );
        assert_eq!(code(start_failure(failed("mount: no device"), false)), None);
    }
}
