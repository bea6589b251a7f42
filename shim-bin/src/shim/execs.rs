//! Execs that go at their exit: an exec a door started for a client of its own (`tether exec`)
//! is removed once its exit is recorded and told, and its code is kept for a while for a later
//! `exec_state`. (containerd's execs stay until containerd deletes them.)

use super::Supervisor;
use shim_core::{ExecId, ProcessKey, Result};
use std::collections::VecDeque;

/// Finished execs remembered for [`Supervisor::exec_state`].
const FINISHED_KEPT: usize = 256;

/// The exit codes of execs removed at their exit, oldest first.
pub type Finished = VecDeque<(ExecId, i32)>;

impl Supervisor {
    /// Removes exec `key` once its exit is recorded (and told to the door).
    pub fn remove_exec_at_exit(&mut self, key: &ProcessKey) -> Result<()> {
        self.process_mut(key)?.remove_at_exit = true;
        Ok(())
    }

    /// After an exit is recorded and told: an exec marked so goes, its code kept.
    pub(crate) fn remove_finished_exec(&mut self, key: &ProcessKey) {
        let ProcessKey::Exec(exec_id) = key else {
            return;
        };
        let Ok(proc) = self.process(key) else {
            return;
        };
        let (Some(exit), true) = (proc.exit, proc.remove_at_exit) else {
            return;
        };
        self.finished_execs
            .push_back((exec_id.clone(), exit.code()));
        while self.finished_execs.len() > FINISHED_KEPT {
            self.finished_execs.pop_front();
        }
        let _ = self.delete(key);
    }

    /// Whether exec `exec_id` runs, and its code once it exited; None: no such exec (or one
    /// finished too long ago).
    pub fn exec_state(&self, exec_id: &ExecId) -> Option<(bool, Option<i32>)> {
        if let Ok(proc) = self.process(&ProcessKey::Exec(exec_id.clone())) {
            return Some((proc.exit.is_none(), proc.exit.map(|exit| exit.code())));
        }
        self.finished_execs
            .iter()
            .find(|(id, _)| id == exec_id)
            .map(|(_, code)| (false, Some(*code)))
    }
}
