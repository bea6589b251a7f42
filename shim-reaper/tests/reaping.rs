//! Reaper behaviour against real processes. Runs single-threaded with its own runner (see Cargo.toml).

// Children are spawned with std and collected by the reaper under test, never by `Child::wait`.
#![allow(clippy::zombie_processes)]

use mio::{Events, Interest, Poll, Token};
use shim_reaper::{set_child_subreaper, Exit, ExitStatus, Reaper};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::process::Command;
use std::time::{Duration, Instant};

type TestFn = fn(&mut Reaper);

const STORM_ENV: &str = "SHIM_REAPER_TEST_STORM";
const TIMEOUT: Duration = Duration::from_secs(20);

fn main() {
    if let Ok(n) = std::env::var(STORM_ENV) {
        storm_parent(n.parse().expect("storm size"));
    }
    set_child_subreaper().expect("subreaper");
    let mut reaper = Reaper::new().expect("reaper");
    let tests: &[(&str, TestFn)] = &[
        ("exit_before_watch_is_kept", exit_before_watch_is_kept),
        ("exit_codes_and_signals", exit_codes_and_signals),
        ("core_dump_is_reported", core_dump_is_reported),
        ("exits_go_to_their_own_waiter", exits_go_to_their_own_waiter),
        (
            "orphan_storm_leaves_no_zombie",
            orphan_storm_leaves_no_zombie,
        ),
        (
            "collect_keeps_watched_exits_for_reap",
            collect_keeps_watched_exits_for_reap,
        ),
    ];
    let (mut passed, mut failed) = (0, 0);
    for (name, test) in tests {
        match catch_unwind(AssertUnwindSafe(|| test(&mut reaper))) {
            Ok(()) => {
                println!("test {name} ... ok");
                passed += 1;
            }
            Err(_) => {
                println!("test {name} ... FAILED");
                failed += 1;
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    std::process::exit(if failed == 0 { 0 } else { 1 });
}

/// The storm helper: fork `n` children that exit at once, then exit without waiting for any of them,
/// so every one of them is orphaned onto the test process (the subreaper).
fn storm_parent(n: usize) -> ! {
    use nix::unistd::{fork, ForkResult};
    for _ in 0..n {
        // SAFETY: this helper process is single-threaded; the child only calls _exit.
        match unsafe { fork() }.expect("fork") {
            ForkResult::Child => unsafe { nix::libc::_exit(0) },
            ForkResult::Parent { .. } => {}
        }
    }
    std::process::exit(0)
}

fn spawn_sh(script: &str) -> i32 {
    let child = Command::new("sh")
        .args(["-c", script])
        .spawn()
        .expect("spawn sh");
    child.id() as i32
}

fn process_state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(") ")?.1.chars().next()
}

fn zombie_children() -> Vec<i32> {
    let me = std::process::id().to_string();
    let mut zombies = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(") ") else {
            continue;
        };
        let fields: Vec<&str> = rest.split(' ').collect();
        if fields[0] == "Z" && fields[1] == me {
            zombies.push(pid);
        }
    }
    zombies
}

fn exit_before_watch_is_kept(reaper: &mut Reaper) {
    let pid = spawn_sh("exit 5");
    let deadline = Instant::now() + TIMEOUT;
    while process_state(pid) != Some('Z') {
        assert!(Instant::now() < deadline, "child never became a zombie");
        std::thread::yield_now();
    }
    // Reaped with nobody watching...
    assert!(reaper.reap().unwrap().is_empty());
    assert_eq!(process_state(pid), None, "the reaper must have reaped it");
    // ...and still delivered to the late watcher.
    let exit = reaper.watch(pid).expect("kept exit");
    assert_eq!(exit.status, ExitStatus::Exited(5));
}

fn exit_codes_and_signals(reaper: &mut Reaper) {
    let cases = [
        ("exit 0", 0, ExitStatus::Exited(0)),
        ("exit 1", 1, ExitStatus::Exited(1)),
        ("exit 255", 255, ExitStatus::Exited(255)),
        (
            "kill -TERM $$",
            143,
            ExitStatus::Signaled {
                signal: 15,
                core_dumped: false,
            },
        ),
        (
            "kill -KILL $$",
            137,
            ExitStatus::Signaled {
                signal: 9,
                core_dumped: false,
            },
        ),
    ];
    for (script, code, status) in cases {
        let pid = spawn_sh(script);
        assert!(reaper.watch(pid).is_none());
        let exit = reaper.wait_for(pid, TIMEOUT).unwrap();
        assert_eq!(exit.status, status, "{script}");
        assert_eq!(exit.status.code(), code, "{script}");
    }
}

fn core_dump_is_reported(reaper: &mut Reaper) {
    // The core lands in the child's working directory (core_pattern "core") or wherever the system's
    // pattern says; only the flag in the wait status is checked.
    let dir = tempfile::tempdir().unwrap();
    let child = Command::new("sh")
        .args(["-c", "ulimit -c unlimited; kill -QUIT $$"])
        .current_dir(dir.path())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    reaper.watch(pid);
    let exit = reaper.wait_for(pid, TIMEOUT).unwrap();
    let ExitStatus::Signaled {
        signal,
        core_dumped,
    } = exit.status
    else {
        panic!("expected a signal, got {}", exit.status);
    };
    assert_eq!(signal, 3);
    let pattern = std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap_or_default();
    if pattern.trim() == "core" {
        assert!(core_dumped, "core dump flag missing");
    }
    assert_eq!(exit.status.code(), 131);
}

fn exits_go_to_their_own_waiter(reaper: &mut Reaper) {
    // A exits first, B later; waiting for B must not swallow A, and statuses must not cross.
    let a = spawn_sh("exit 11");
    let b = spawn_sh("sleep 0.2; exit 22");
    assert!(reaper.watch(a).is_none());
    assert!(reaper.watch(b).is_none());
    let exit_b = reaper.wait_for(b, TIMEOUT).unwrap();
    assert_eq!((exit_b.pid, exit_b.status), (b, ExitStatus::Exited(22)));
    let delivered: Vec<Exit> = reaper.reap().unwrap();
    assert_eq!(
        delivered.len(),
        1,
        "A's exit must be delivered exactly once"
    );
    assert_eq!(
        (delivered[0].pid, delivered[0].status),
        (a, ExitStatus::Exited(11))
    );
    assert!(reaper.reap().unwrap().is_empty());
    assert!(!reaper.is_watched(a) && !reaper.is_watched(b));
}

fn orphan_storm_leaves_no_zombie(reaper: &mut Reaper) {
    const ORPHANS: u64 = 1000;
    let before = reaper.stats();
    let mut poll = Poll::new().unwrap();
    poll.registry()
        .register(reaper, Token(0), Interest::READABLE)
        .unwrap();
    let helper = Command::new(std::env::current_exe().unwrap())
        .env(STORM_ENV, ORPHANS.to_string())
        .spawn()
        .unwrap();
    let helper_pid = helper.id() as i32;
    reaper.watch(helper_pid);
    let mut events = Events::with_capacity(8);
    let mut helper_exit = None;
    let deadline = Instant::now() + TIMEOUT;
    while reaper.stats().reaped - before.reaped < ORPHANS + 1 {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "only {:?} reaped", reaper.stats());
        poll.poll(&mut events, Some(left)).unwrap();
        for exit in reaper.reap().unwrap() {
            assert_eq!(exit.pid, helper_pid, "only the helper is watched");
            helper_exit = Some(exit);
        }
    }
    poll.registry().deregister(reaper).unwrap();
    assert_eq!(helper_exit.map(|e| e.status), Some(ExitStatus::Exited(0)));
    let after = reaper.stats();
    assert_eq!(after.reaped - before.reaped, ORPHANS + 1);
    assert_eq!(after.unclaimed - before.unclaimed, ORPHANS);
    assert_eq!(zombie_children(), Vec::<i32>::new());
}

fn collect_keeps_watched_exits_for_reap(reaper: &mut Reaper) {
    let pid = spawn_sh("exit 9");
    assert!(reaper.watch(pid).is_none());
    let deadline = Instant::now() + TIMEOUT;
    // collect() reaps (no zombie is left) but hands nothing out...
    while process_state(pid).is_some() {
        assert!(Instant::now() < deadline, "never reaped");
        reaper.collect().unwrap();
        std::thread::yield_now();
    }
    // ...says it holds one (the signalfd was drained: nothing else would tell)...
    assert!(reaper.has_ready(), "a collected exit is not reported");
    // ...and the next reap() delivers it.
    let delivered = reaper.reap().unwrap();
    assert!(!reaper.has_ready());
    assert_eq!(delivered.len(), 1);
    assert_eq!(
        (delivered[0].pid, delivered[0].status),
        (pid, ExitStatus::Exited(9))
    );
}
