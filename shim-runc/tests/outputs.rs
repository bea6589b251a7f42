//! Parsing outputs captured from runc 1.1.5 on Debian 12 (busybox fixture; paths rewritten), and
//! error extraction from a real runc JSON log. Reached through a fake runtime that prints them, so
//! the public API is what is tested.

use shim_runc::{last_log_error, DirectWait, Runc, Status};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Mutex;

/// See fake_runtime.rs: writing an executable while another thread forks can fail with ETXTBSY.
static SPAWN_LOCK: Mutex<()> = Mutex::new(());

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

/// A runtime that prints the captured file on stdout.
fn printing(dir: &tempfile::TempDir, file: &str) -> Runc {
    let path = dir.path().join("captured-runc");
    std::fs::write(
        &path,
        format!("#!/bin/sh\ncat '{}'\n", data(file).display()),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    Runc::new(path)
}

#[test]
fn real_outputs_parse() {
    let _lock = SPAWN_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap();

    let state = printing(&dir, "state.json")
        .state("web", &mut DirectWait)
        .unwrap();
    assert_eq!((state.id.as_str(), state.status), ("web", Status::Running));
    assert!(state.pid > 0);
    assert_eq!(state.bundle, "/bundles/web");

    let list = printing(&dir, "list.json").list(&mut DirectWait).unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].pid, state.pid);

    let pids = printing(&dir, "ps.json")
        .ps("web", &mut DirectWait)
        .unwrap();
    assert_eq!(pids, vec![state.pid]);

    let stats = printing(&dir, "events-stats.json")
        .stats("web", &mut DirectWait)
        .unwrap();
    assert_eq!(stats.cpu.total, 9_335_729);
    assert_eq!(stats.memory.usage, 471_040);
    assert_eq!(stats.memory.max, 2_781_184);
    assert_eq!(stats.pids.current, 1);
    assert!(
        stats.raw.get("cpuset").is_some(),
        "untyped fields stay available"
    );
}

#[test]
fn real_log_gives_the_last_error_after_the_offset() {
    let log = data("runc-log.json");
    assert_eq!(
        last_log_error(&log, 0).as_deref(),
        Some("container does not exist")
    );
    let first_line = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .len() as u64
        + 1;
    assert_eq!(
        last_log_error(&log, first_line).as_deref(),
        Some("container does not exist")
    );
    let everything = std::fs::metadata(&log).unwrap().len();
    assert_eq!(last_log_error(&log, everything), None);
}
