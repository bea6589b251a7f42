//! `run --rm`: the container is removed in the turn its exit is recorded. While the output kept
//! for a `run --rm -i/-t` container's first attach client (its foreground `tether run`) waits for
//! that client, the removal is held, for at most [`FIRST_ATTACH_WAIT`] after the exit.

use super::Supervisor;
use shim_core::ProcessKey;
use std::time::{Duration, Instant};

/// How long an exited container waits for its first attach client before it is removed anyway.
const FIRST_ATTACH_WAIT: Duration = Duration::from_secs(30);

/// A removal asked for.
#[derive(Debug)]
pub struct RemoveAtExit {
    /// The first attach client has yet to take the kept output.
    held: bool,
    /// When the supervisor first saw the init's exit recorded.
    exit_seen: Option<Instant>,
}

impl Supervisor {
    /// Remove the container once its exit is recorded; `held`: not before its first attach client
    /// came (see [`Supervisor::release_removal`]), or [`FIRST_ATTACH_WAIT`] passed.
    pub fn remove_at_exit(&mut self, held: bool) {
        self.removal = Some(RemoveAtExit {
            held,
            exit_seen: None,
        });
    }

    /// The first attach client has the container's output: nothing holds the removal any more.
    pub fn release_removal(&mut self) {
        if let Some(removal) = &mut self.removal {
            removal.held = false;
        }
    }

    /// When a held removal goes ahead anyway.
    pub(crate) fn removal_deadline(&self) -> Option<Instant> {
        let removal = self.removal.as_ref().filter(|r| r.held)?;
        removal.exit_seen?.checked_add(FIRST_ATTACH_WAIT)
    }

    /// Removes the container if its exit is recorded and nothing holds the removal. Its exit file
    /// and state are written first: a `wait` that raced the removal has them. The daemon ends
    /// with it.
    pub(crate) fn remove_if_exited(&mut self) {
        let exited = self
            .process(&ProcessKey::Init)
            .is_ok_and(|init| init.exit.is_some());
        let Some(removal) = self.removal.as_mut().filter(|_| exited) else {
            return;
        };
        let seen = *removal.exit_seen.get_or_insert_with(Instant::now);
        if removal.held && seen.elapsed() < FIRST_ATTACH_WAIT {
            return;
        }
        self.removal = None;
        self.refresh_record();
        match self.delete_container(false) {
            Ok(_) => {
                self.diag.info(format_args!(
                    "container {} removed at its exit; daemon exits",
                    self.id
                ));
                self.done = true;
            }
            Err(e) => self
                .diag
                .warn(format_args!("remove at exit: {}", e.message)),
        }
    }
}
