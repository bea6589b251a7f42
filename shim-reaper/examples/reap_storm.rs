//! Reap-rate benchmark: a helper puts itself in a new process group, forks N children that wait for a
//! signal, and exits, orphaning them all onto this process (a subreaper). Once the helper's exit is in,
//! the whole group is killed at once and the clock runs until the last orphan is reaped through the mio
//! loop: exits delivered per second, not forks per second.
//!
//! `cargo run --release -p shim-reaper --example reap_storm -- 10000` prints one JSON object: the reap
//! rate, and this process's memory before and after.

use mio::{Events, Interest, Poll, Token};
use shim_reaper::{set_child_subreaper, Reaper};
use std::process::Command;
use std::time::{Duration, Instant};

const HELPER_ENV: &str = "REAP_STORM_HELPER";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: u64 = std::env::args().nth(1).map_or(Ok(10_000), |a| a.parse())?;
    if std::env::var_os(HELPER_ENV).is_some() {
        fork_and_leave(n);
    }
    set_child_subreaper()?;
    let mut reaper = Reaper::new()?;
    let mut poll = Poll::new()?;
    poll.registry()
        .register(&mut reaper, Token(0), Interest::READABLE)?;
    let before = memory_kib();
    let helper = Command::new(std::env::current_exe()?)
        .arg(n.to_string())
        .env(HELPER_ENV, "1")
        .spawn()?;
    let helper_pid = helper.id() as i32;
    reaper.watch(helper_pid);
    reaper.wait_for(helper_pid, Duration::from_secs(120))?;
    let start = Instant::now();
    nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(helper_pid),
        nix::sys::signal::Signal::SIGKILL,
    )?;
    let mut events = Events::with_capacity(16);
    let mut last_reap = start;
    while reaper.stats().reaped < n + 1 {
        poll.poll(&mut events, Some(Duration::from_secs(30)))?;
        if events.is_empty() {
            return Err(format!("stalled at {:?}", reaper.stats()).into());
        }
        reaper.reap()?;
        last_reap = Instant::now();
    }
    let elapsed = last_reap.duration_since(start);
    let after = memory_kib();
    println!(
        "{{\"orphans\":{n},\"seconds\":{:.4},\"exits_per_second\":{:.0},\"rss_kib_before\":{},\"rss_kib_after\":{},\"unclaimed_dropped\":{}}}",
        elapsed.as_secs_f64(),
        (n + 1) as f64 / elapsed.as_secs_f64(),
        before,
        after,
        reaper.stats().unclaimed_dropped
    );
    Ok(())
}

/// Forks `n` children that wait for a signal, in a process group of their own, then exits without
/// waiting for them.
fn fork_and_leave(n: u64) -> ! {
    use nix::unistd::{fork, setpgid, ForkResult, Pid};
    setpgid(Pid::from_raw(0), Pid::from_raw(0)).expect("setpgid");
    for _ in 0..n {
        // SAFETY: this helper process is single-threaded and the child only calls pause/_exit.
        if let Ok(ForkResult::Child) = unsafe { fork() } {
            // SAFETY: pause and _exit are async-signal-safe and take no pointers.
            unsafe {
                nix::libc::pause();
                nix::libc::_exit(0)
            }
        }
    }
    std::process::exit(0)
}

fn memory_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        })
        .unwrap_or(0)
}
