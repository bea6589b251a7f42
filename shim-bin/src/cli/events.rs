//! `tether events`: what happens to containers, as JSON lines, from the moment it starts: `start`,
//! `pause`, `resume`, `oom`, `exit` (with the code) and `delete`. It watches tether's state
//! directory with inotify and compares each container's `state.json` with what it saw last, so the
//! daemons do nothing for it and it sees containerd's containers too.

use crate::cli::client::recorded_state;
use crate::cli::error::{Error, Result};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};
use shim_core::{ContainerId, ContainerState, StateLayout, Status};
use std::collections::HashMap;
use std::io::Write;

/// One event, as printed.
#[derive(Debug, PartialEq, Eq, serde::Serialize)]
pub struct ContainerEvent {
    pub time: String,
    pub id: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
}

/// What changed between two states of one container (`None`: not there).
pub fn changes(
    before: Option<&ContainerState>,
    after: Option<&ContainerState>,
) -> Vec<(&'static str, Option<i32>)> {
    let mut out = Vec::new();
    let status = |s: Option<&ContainerState>| s.map(|s| s.status);
    match (before, after) {
        (_, None) => {
            if before.is_some() {
                out.push(("delete", None));
            }
            return out;
        }
        (None, Some(_)) => {}
        (Some(_), Some(_)) => {}
    }
    let after_state = after.expect("matched above");
    let was = status(before);
    let is = after_state.status;
    if matches!(is, Status::Running | Status::Paused)
        && !matches!(was, Some(Status::Running | Status::Paused))
    {
        out.push(("start", None));
    }
    if is == Status::Paused && was != Some(Status::Paused) {
        out.push(("pause", None));
    }
    if is == Status::Running && was == Some(Status::Paused) {
        out.push(("resume", None));
    }
    if after_state.oom_killed && !before.is_some_and(|b| b.oom_killed) {
        out.push(("oom", None));
    }
    if let (Some(exit), false) = (&after_state.exit, before.is_some_and(|b| b.exit.is_some())) {
        out.push(("exit", Some(exit.code)));
    }
    out
}

/// Runs `tether events` until interrupted (or its reader goes away).
pub fn events(layout: &StateLayout) -> Result<u8> {
    let failed = |what: &str, e: nix::Error| Error::failed(format!("events: {what}: {e}"));
    let inotify = Inotify::init(InitFlags::IN_CLOEXEC).map_err(|e| failed("inotify", e))?;
    std::fs::create_dir_all(layout.root())
        .map_err(|e| Error::failed(format!("state dir {}: {e}", layout.root().display())))?;
    let root = inotify
        .add_watch(
            layout.root(),
            AddWatchFlags::IN_CREATE | AddWatchFlags::IN_DELETE | AddWatchFlags::IN_MOVED_TO,
        )
        .map_err(|e| failed(&layout.root().display().to_string(), e))?;
    let mut watched: HashMap<WatchDescriptor, ContainerId> = HashMap::new();
    let mut known: HashMap<ContainerId, Option<ContainerState>> = HashMap::new();
    let watch = |id: &ContainerId, watched: &mut HashMap<WatchDescriptor, ContainerId>| {
        let flags = AddWatchFlags::IN_MOVED_TO | AddWatchFlags::IN_CLOSE_WRITE;
        if let Ok(wd) = inotify.add_watch(&layout.container_dir(id), flags) {
            watched.insert(wd, id.clone());
        }
    };
    // What is there now is the starting point: only what changes from here is told.
    for id in layout.list().unwrap_or_default() {
        watch(&id, &mut watched);
        known.insert(id.clone(), recorded_state(layout, &id));
    }
    let mut stdout = std::io::stdout();
    loop {
        let happened = inotify.read_events().map_err(|e| failed("read", e))?;
        let mut touched: Vec<ContainerId> = Vec::new();
        for event in happened {
            if event.wd == root {
                let Some(id) = event
                    .name
                    .as_ref()
                    .and_then(|name| name.to_str())
                    .and_then(|name| name.parse::<ContainerId>().ok())
                else {
                    continue;
                };
                if event.mask.contains(AddWatchFlags::IN_CREATE) {
                    // Watch first, then read: a state written in between is not missed.
                    watch(&id, &mut watched);
                }
                touched.push(id);
            } else if let Some(id) = watched.get(&event.wd) {
                touched.push(id.clone());
            }
        }
        touched.dedup();
        for id in touched {
            let now = if layout.container_dir(&id).is_dir() {
                recorded_state(layout, &id)
            } else {
                None
            };
            let before = known.get(&id).cloned().flatten();
            // A directory still without state.json is a container being made: nothing to tell.
            if now.is_none() && layout.container_dir(&id).is_dir() {
                continue;
            }
            for (kind, exit_code) in changes(before.as_ref(), now.as_ref()) {
                let event = ContainerEvent {
                    time: crate::common::time::now(),
                    id: id.as_str().to_owned(),
                    kind,
                    exit_code,
                };
                let mut line = serde_json::to_vec(&event).expect("events serialize");
                line.push(b'\n');
                if stdout
                    .write_all(&line)
                    .and_then(|()| stdout.flush())
                    .is_err()
                {
                    return Ok(0); // the reader went away
                }
            }
            if now.is_none() {
                known.remove(&id);
                watched.retain(|_, watched_id| *watched_id != id);
            } else {
                known.insert(id, now);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(status: Status, exit: Option<i32>, oom: bool) -> ContainerState {
        let mut state: ContainerState = serde_json::from_value(serde_json::json!({
            "id": "web", "status": "running", "pid": 1, "daemon_pid": 2, "bundle": "/b",
            "log_path": "/l", "log_format": "cri", "runtime": "runc", "created_at": "t"
        }))
        .unwrap();
        state.status = status;
        state.oom_killed = oom;
        state.exit = exit.map(|code| {
            serde_json::from_value(serde_json::json!({"code": code, "exited_at": "t"})).unwrap()
        });
        state
    }

    #[test]
    fn state_changes_are_the_events() {
        let running = state(Status::Running, None, false);
        let paused = state(Status::Paused, None, false);
        let exited = state(Status::Stopped, Some(3), true);
        assert_eq!(changes(None, Some(&running)), vec![("start", None)]);
        assert_eq!(
            changes(Some(&running), Some(&paused)),
            vec![("pause", None)]
        );
        assert_eq!(
            changes(Some(&paused), Some(&running)),
            vec![("resume", None)]
        );
        assert_eq!(
            changes(Some(&running), Some(&exited)),
            vec![("oom", None), ("exit", Some(3))]
        );
        assert_eq!(changes(Some(&exited), None), vec![("delete", None)]);
        assert_eq!(changes(Some(&running), Some(&running)), vec![]);
        assert_eq!(changes(None, None), vec![]);
    }
}
