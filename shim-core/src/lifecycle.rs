//! The lifecycle rules of a container's processes, as pure decisions: what each phase allows, when
//! an exit may be recorded, what a delete does. The supervisor asks; every door gets the same answer.
//!
//! # Example
//!
//! ```
//! use shim_core::lifecycle::{self, DeletePlan, Phase};
//! use shim_core::ProcessKey;
//!
//! // A running container is removed only by force, and then its exit is recorded as SIGKILL.
//! assert!(lifecycle::delete_plan(Phase::Running, false).is_err());
//! assert_eq!(lifecycle::delete_plan(Phase::Running, true), Ok(DeletePlan::Force));
//! // The init's exit waits for its output, and for its execs.
//! let output = lifecycle::Output { delivered: true, grace_over: false };
//! assert!(!lifecycle::exit_may_be_recorded(&ProcessKey::Init, output, true));
//! assert!(lifecycle::exit_may_be_recorded(&ProcessKey::Init, output, false));
//! ```

use crate::error::Error;
use crate::process::ProcessKey;
use std::time::Duration;

/// Where a process is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Made by the runtime (`create`, or an exec registered), not started.
    Created,
    Running,
    /// Frozen (the container's cgroup).
    Paused,
    /// Reaped; its output is still on its way, so the exit is not recorded yet.
    Exiting,
    /// Its exit is recorded and announced.
    Exited,
}

impl Phase {
    /// Alive as far as a caller can tell (an exiting process is not).
    pub fn is_live(self) -> bool {
        matches!(self, Phase::Running | Phase::Paused)
    }
}

/// How long the init's exit waits for output pipes an orphan outside it keeps open (a daemon it
/// left behind in a shared PID namespace).
pub const INIT_OUTPUT_GRACE: Duration = Duration::from_secs(2);
/// The same for an exec: its background children may hold them for ever, and
/// `sh -c 'sleep 100 &'` should return at once.
pub const EXEC_OUTPUT_GRACE: Duration = Duration::from_millis(250);

/// The output grace of a process (see [`INIT_OUTPUT_GRACE`], [`EXEC_OUTPUT_GRACE`]).
pub fn output_grace(key: &ProcessKey) -> Duration {
    match key {
        ProcessKey::Init => INIT_OUTPUT_GRACE,
        ProcessKey::Exec(_) => EXEC_OUTPUT_GRACE,
    }
}

/// Where a reaped process's output is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Output {
    /// Every byte reached its destination (or a stalled reader's grace ran out).
    pub delivered: bool,
    /// The process's [`output_grace`] is over.
    pub grace_over: bool,
}

/// Whether a reaped process's exit may be recorded (and announced) now. An exit is recorded only
/// after its output: a reader that hears of the exit may stop reading. The init's exit also comes
/// after every running exec's, as containerd expects — unless the grace is over (an exec that
/// outlives its init for that long is not waited for).
pub fn exit_may_be_recorded(key: &ProcessKey, output: Output, execs_running: bool) -> bool {
    match key {
        ProcessKey::Exec(_) => output.delivered,
        ProcessKey::Init => {
            (output.delivered && !execs_running) || (execs_running && output.grace_over)
        }
    }
}

/// Whether an OOM kill must be looked for before this exit is announced: the kill that ended the
/// init is reported before the exit it caused.
pub fn oom_before_exit(key: &ProcessKey) -> bool {
    key.is_init()
}

/// What a delete does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeletePlan {
    /// The exit is recorded: remove.
    Remove,
    /// Reaped, output still draining: record the exit first (its waiters and events see it), then
    /// remove.
    RecordExitFirst,
    /// Not exited: the runtime removes it by force, and the exit recorded is
    /// [`crate::Exit::forced`] unless the real one is reaped in time.
    Force,
}

/// Deleting a process in `phase`; `force` as `tether rm -f` asks. A live process is removed only by
/// force; one never started (containerd deletes created tasks) always is.
pub fn delete_plan(phase: Phase, force: bool) -> Result<DeletePlan, Error> {
    match phase {
        Phase::Exited => Ok(DeletePlan::Remove),
        Phase::Exiting => Ok(DeletePlan::RecordExitFirst),
        Phase::Created => Ok(DeletePlan::Force),
        Phase::Running | Phase::Paused if force => Ok(DeletePlan::Force),
        Phase::Running | Phase::Paused => Err(Error::invalid_state("it is running; kill it first")),
    }
}

/// Starting a process.
pub fn check_start(key: &ProcessKey, phase: Phase) -> Result<(), Error> {
    match phase {
        Phase::Created => Ok(()),
        _ => Err(Error::invalid_state(format!("{key} was started already"))),
    }
}

/// Adding or starting an exec, given the init's phase.
pub fn check_exec(init: Phase) -> Result<(), Error> {
    if init.is_live() {
        Ok(())
    } else {
        Err(Error::invalid_state("the container is not running"))
    }
}

/// Sending a signal. The runtime signals a created container's init; an exec is a process only once
/// started; a reaped process is gone (containerd's "process already finished").
pub fn check_signal(key: &ProcessKey, phase: Phase) -> Result<(), Error> {
    match (key, phase) {
        (_, Phase::Exiting | Phase::Exited) => Err(Error::not_found("process already finished")),
        (ProcessKey::Exec(id), Phase::Created) => Err(Error::invalid_state(format!(
            "process {id} was not started"
        ))),
        _ => Ok(()),
    }
}

/// Listing the container's processes (`runc ps`), given the init's phase: while the init lives,
/// created or not; once it exited nothing of the container is left to list.
pub fn check_pids(init: Phase) -> Result<(), Error> {
    match init {
        Phase::Created | Phase::Running | Phase::Paused => Ok(()),
        Phase::Exiting | Phase::Exited => Err(Error::invalid_state("the container is not running")),
    }
}

/// Pausing (`pause`) or resuming the container, given the init's phase.
pub fn check_pause(init: Phase, pause: bool) -> Result<(), Error> {
    match (init, pause) {
        (Phase::Running, true) | (Phase::Paused, false) => Ok(()),
        (_, true) => Err(Error::invalid_state("the container is not running")),
        (_, false) => Err(Error::invalid_state("the container is not paused")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use crate::process::ExecId;

    fn exec() -> ProcessKey {
        ProcessKey::Exec(ExecId::new("e1").unwrap())
    }

    const ALL: [Phase; 5] = [
        Phase::Created,
        Phase::Running,
        Phase::Paused,
        Phase::Exiting,
        Phase::Exited,
    ];

    #[test]
    fn an_exec_exit_waits_for_its_output_only() {
        for execs_running in [false, true] {
            for grace_over in [false, true] {
                for delivered in [false, true] {
                    let output = Output {
                        delivered,
                        grace_over,
                    };
                    assert_eq!(
                        exit_may_be_recorded(&exec(), output, execs_running),
                        delivered
                    );
                }
            }
        }
    }

    #[test]
    fn the_init_exit_comes_after_running_execs_until_the_grace_is_over() {
        let at = |delivered, grace_over, execs| {
            exit_may_be_recorded(
                &ProcessKey::Init,
                Output {
                    delivered,
                    grace_over,
                },
                execs,
            )
        };
        assert!(at(true, false, false));
        assert!(!at(false, false, false));
        assert!(!at(true, false, true));
        assert!(at(true, true, true));
        assert!(at(false, true, true));
        // Not delivered, no exec: the output decides (its own grace is inside `delivered`).
        assert!(!at(false, true, false));
    }

    #[test]
    fn the_grace_is_short_for_execs() {
        assert!(output_grace(&exec()) < output_grace(&ProcessKey::Init));
    }

    #[test]
    fn delete_records_the_exit_first_and_refuses_a_live_process() {
        assert_eq!(delete_plan(Phase::Exited, false), Ok(DeletePlan::Remove));
        assert_eq!(
            delete_plan(Phase::Exiting, false),
            Ok(DeletePlan::RecordExitFirst)
        );
        assert_eq!(
            delete_plan(Phase::Exiting, true),
            Ok(DeletePlan::RecordExitFirst)
        );
        assert_eq!(delete_plan(Phase::Created, false), Ok(DeletePlan::Force));
        for live in [Phase::Running, Phase::Paused] {
            assert_eq!(
                delete_plan(live, false).unwrap_err().kind,
                ErrorKind::InvalidState
            );
            assert_eq!(delete_plan(live, true), Ok(DeletePlan::Force));
        }
    }

    #[test]
    fn a_finished_process_cannot_be_signalled() {
        for key in [ProcessKey::Init, exec()] {
            for phase in [Phase::Exiting, Phase::Exited] {
                assert_eq!(
                    check_signal(&key, phase).unwrap_err().kind,
                    ErrorKind::NotFound
                );
            }
            assert!(check_signal(&key, Phase::Running).is_ok());
        }
        assert!(check_signal(&ProcessKey::Init, Phase::Created).is_ok());
        assert_eq!(
            check_signal(&exec(), Phase::Created).unwrap_err().kind,
            ErrorKind::InvalidState
        );
    }

    #[test]
    fn start_exec_and_pause_fit_their_phases() {
        for phase in ALL {
            assert_eq!(
                check_start(&ProcessKey::Init, phase).is_ok(),
                phase == Phase::Created
            );
            assert_eq!(check_exec(phase).is_ok(), phase.is_live());
            assert_eq!(check_pause(phase, true).is_ok(), phase == Phase::Running);
            assert_eq!(check_pause(phase, false).is_ok(), phase == Phase::Paused);
        }
    }

    #[test]
    fn pids_are_listed_while_the_init_lives() {
        for phase in ALL {
            let live = matches!(phase, Phase::Created | Phase::Running | Phase::Paused);
            assert_eq!(check_pids(phase).is_ok(), live, "{phase:?}");
        }
    }

    #[test]
    fn the_oom_is_looked_for_before_the_init_exit() {
        assert!(oom_before_exit(&ProcessKey::Init));
        assert!(!oom_before_exit(&exec()));
    }
}
