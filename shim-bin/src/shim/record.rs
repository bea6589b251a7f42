//! The container's record in tether's state directory: `state.json` (what `tether ps`, `state`,
//! `events` and `wait` read) and the `exit` file, kept current by the supervisor after every turn
//! of its loop, whichever door the container came through. `tether run` makes a container's entry
//! before its daemon starts; for containerd's containers it is made here, at Create, and removed
//! with the shim (or, after a shim died, at containerd's `delete`).

use super::persist::write_atomically;
use super::Supervisor;
use shim_core::lifecycle::Phase;
use shim_core::{ContainerId, ContainerState, StateLayout};
use std::time::{Duration, Instant};

/// The file that marks an entry of tether's state directory as a containerd shim's.
const MARKER: &str = "containerd-shim";

/// How often a record that could not be written (a full state dir) is tried again.
const PERSIST_RETRY: Duration = Duration::from_secs(1);

/// tether's state directory as the containerd shim finds it: `TETHER_STATE_DIR`, or the default.
pub fn state_layout() -> StateLayout {
    let root = std::env::var_os("TETHER_STATE_DIR")
        .filter(|dir| !dir.is_empty())
        .unwrap_or_else(|| shim_core::DEFAULT_STATE_DIR.into());
    StateLayout::new(root)
}

/// One container's entry in the state directory, as written.
#[derive(Debug)]
pub struct Record {
    layout: StateLayout,
    id: ContainerId,
    /// What `state.json` holds now, and whether the exit file is written.
    written: Option<ContainerState>,
    exit_written: bool,
    /// When to write again after a failed write.
    retry_at: Option<Instant>,
    /// The entry is gone (the container was deleted): nothing is written any more.
    removed: bool,
}

impl Record {
    /// The record of container `id` in `layout`, whose directory exists.
    pub fn new(layout: StateLayout, id: ContainerId) -> Self {
        Record {
            layout,
            id,
            written: None,
            exit_written: false,
            retry_at: None,
            removed: false,
        }
    }

    /// Makes the entry of a containerd container `id` in tether's state directory (so `tether ps`
    /// lists it): the directory (0700), its mark, the daemon's pid. Fails (one line) when the id
    /// is not one tether accepts or is taken by a container `tether run` started.
    pub fn make_containerd_entry(id: &str) -> Result<Record, String> {
        use std::os::unix::fs::DirBuilderExt;
        let layout = state_layout();
        let id: ContainerId = id
            .parse()
            .map_err(|e| format!("not listed by tether: {e}"))?;
        std::fs::create_dir_all(layout.root())
            .map_err(|e| format!("{}: {e}", layout.root().display()))?;
        let dir = layout.container_dir(&id);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|e| format!("not listed by tether: {}: {e}", dir.display()))?;
        let made = std::fs::write(dir.join(MARKER), "").and_then(|()| {
            std::fs::write(
                layout.daemon_pid_file(&id),
                format!("{}\n", std::process::id()),
            )
        });
        if let Err(e) = made {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(format!("not listed by tether: {e}"));
        }
        Ok(Record::new(layout, id))
    }

    /// Where the entry is.
    pub fn layout(&self) -> &StateLayout {
        &self.layout
    }

    /// Whose entry it is.
    pub fn id(&self) -> &ContainerId {
        &self.id
    }

    /// When a failed write is tried again.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.retry_at
    }

    /// Writes `state.json` (and the exit file, once there is an exit) when they changed. A write
    /// that fails (a full state dir) is tried again every [`PERSIST_RETRY`] until it is done: the
    /// exit is never lost. Returns what to say in the shim's log (a failure, and when it is over).
    fn save(&mut self, state: ContainerState) -> Option<String> {
        if self.removed || self.retry_at.is_some_and(|at| at > Instant::now()) {
            return None;
        }
        let mut failure = None;
        if let (Some(exit), false) = (&state.exit, self.exit_written) {
            let path = self.layout.exit_file(&self.id);
            match write_atomically(&path, format!("{}\n", exit.code).as_bytes()) {
                Ok(()) => self.exit_written = true,
                Err(e) => failure = Some(format!("write the exit file: {e}")),
            }
        }
        if self.written.as_ref() != Some(&state) {
            let json = serde_json::to_vec_pretty(&state).expect("state serializes");
            match write_atomically(&self.layout.state_file(&self.id), &json) {
                Ok(()) => self.written = Some(state),
                Err(e) => failure = Some(format!("write state.json: {e}")),
            }
        }
        let first = self.retry_at.is_none();
        match failure {
            Some(failure) => {
                self.retry_at = Instant::now().checked_add(PERSIST_RETRY);
                first.then(|| format!("{failure} (tried again until written)"))
            }
            None => self
                .retry_at
                .take()
                .map(|_| "state written again".to_owned()),
        }
    }

    /// The container was deleted: its entry leaves tether's state directory (before the answer
    /// is sent, so `tether rm` returning means the id is free).
    pub fn remove(&mut self) {
        if !self.removed {
            self.removed = true;
            let _ = super::mounts::remove_container_dir(&self.layout.container_dir(&self.id));
        }
    }
}

/// Removes the entry of a container whose shim died (containerd's `delete`): only when the entry
/// is a containerd shim's (its mark says so) and nothing answers on its socket.
pub fn forget_containerd_entry(id: &str) {
    let layout = state_layout();
    let Ok(id) = id.parse::<ContainerId>() else {
        return;
    };
    let ours = layout.container_dir(&id).join(MARKER).exists();
    let answers = crate::common::sockpath::connect(&layout.control_socket(&id)).is_ok();
    if ours && !answers {
        let _ = super::mounts::remove_container_dir(&layout.container_dir(&id));
    }
}

impl Supervisor {
    /// The container as `tether ps` shows it.
    pub fn container_state(&self) -> Option<ContainerState> {
        let container = self.container.as_ref()?;
        let init = &container.init;
        let status = match init.phase() {
            Phase::Created => shim_core::Status::Created,
            Phase::Paused => shim_core::Status::Paused,
            Phase::Exited => shim_core::Status::Stopped,
            Phase::Running | Phase::Exiting => shim_core::Status::Running,
        };
        let listing = &container.listing;
        Some(ContainerState {
            id: self.id.parse().ok()?,
            status,
            pid: init.pid,
            daemon_pid: std::process::id() as i32,
            bundle: container.bundle.clone().into(),
            log_path: listing.log_path.clone(),
            log_format: listing.log_format.clone(),
            runtime: listing.runtime.clone(),
            runtime_root: listing.runtime_root.clone(),
            created_at: container.created_at.clone(),
            exit: init.exit.map(|exit| {
                shim_core::ExitRecord::new(&exit, crate::common::time::rfc3339(exit.reaped_at))
            }),
            oom_killed: container.oom_killed,
        })
    }

    /// Keeps `state.json` and the exit file current.
    pub fn refresh_record(&mut self) {
        let state = self.container_state();
        if let (Some(record), Some(state)) = (&mut self.record, state) {
            if let Some(message) = record.save(state) {
                self.diag.warn(format_args!("{message}"));
            }
        }
    }
}
