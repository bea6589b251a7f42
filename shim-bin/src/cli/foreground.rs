//! `tether run` in the foreground, as `docker run`: the container's output here (from its log,
//! every byte from the start; or attached, with `-i`/`-t`), Ctrl-C passed on as SIGINT (a second
//! one sends SIGKILL), tether's exit code the container's, and with `--rm` nothing left after.

use crate::cli::client::{request, REQUEST_TIMEOUT};
use crate::cli::error::{Error, Result};
use crate::cli::logs::LogsOptions;
use crate::cli::streams::Attached;
use nix::sys::signal::{SigSet, Signal};
use shim_core::protocol::{Reply, Request};
use shim_core::{ContainerId, StateLayout};
use std::time::{Duration, Instant};

/// How long `run --rm` waits for the daemon to have removed the container after its exit.
const REMOVAL_WAIT: Duration = Duration::from_secs(10);

/// Shows the started container until it exits (or the client detaches); returns its exit code.
/// With `--rm`, attached, the daemon removes the container at its exit (`remove_on_exit`): the
/// client waits for that, or, detached, leaves the container to run and be removed; following
/// the log, the client removes it once it has the exit code.
pub fn run(layout: &StateLayout, id: &ContainerId, attach: bool, remove: bool) -> Result<u8> {
    forward_interrupts(layout, id);
    if attach {
        let keys = crate::cli::detach::DetachKeys::parse(crate::cli::detach::DEFAULT)
            .expect("docker's default");
        let code = match crate::cli::streams::attach(layout, id.as_str(), false, &keys)? {
            Attached::Exited(code) => code,
            Attached::Detached => return Ok(0),
            Attached::OutputClosed => return Ok(crate::cli::streams::OUTPUT_CLOSED),
        };
        if remove {
            await_removal(layout, id, code)?;
        }
        return Ok(code);
    }
    let code = {
        let follow = LogsOptions {
            follow: true,
            ..LogsOptions::default()
        };
        crate::cli::logs::logs(layout, id, &follow)?;
        match request(layout, id, &Request::Wait, None)? {
            Reply::Exit { exit_code } => exit_code.clamp(0, 255) as u8,
            other => {
                return Err(Error::failed(format!(
                    "unexpected answer from the shim daemon: {other:?}"
                )))
            }
        }
    };
    if remove {
        request(
            layout,
            id,
            &Request::Delete { force: true },
            Some(REQUEST_TIMEOUT),
        )?;
    }
    Ok(code)
}

/// How long after a first Ctrl-C a container still running gets the hint that a second kills.
const INTERRUPT_HINT_AFTER: Duration = Duration::from_secs(1);

/// Whether the container still runs `within` from now (it is asked at once, then once more).
fn still_running_after(layout: &StateLayout, id: &ContainerId, within: Duration) -> bool {
    let running = || {
        matches!(
            request(layout, id, &Request::State, Some(crate::cli::client::STATE_TIMEOUT)),
            Ok(Reply::State(state)) if state.exit.is_none()
        )
    };
    if !running() {
        return false;
    }
    std::thread::sleep(within);
    running()
}

/// Waits (bounded) until the daemon removed the container that exited with `code`.
fn await_removal(layout: &StateLayout, id: &ContainerId, code: u8) -> Result<()> {
    let deadline = Instant::now() + REMOVAL_WAIT;
    while layout.container_dir(id).exists() {
        if Instant::now() >= deadline {
            return Err(Error::failed(format!(
                "container {id} exited ({code}) but was not removed within {}s",
                REMOVAL_WAIT.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

/// SIGINT, SIGTERM and SIGHUP no longer end tether: a thread waits for them and passes each on
/// to the container (SIGINT and SIGHUP as themselves, SIGTERM too); after the first, another
/// SIGINT sends SIGKILL. (Blocked here, after the daemon was started: it keeps its own mask.)
fn forward_interrupts(layout: &StateLayout, id: &ContainerId) {
    let mut set = SigSet::empty();
    for signal in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        set.add(signal);
    }
    if set.thread_block().is_err() {
        return;
    }
    let (layout, id) = (layout.clone(), id.clone());
    std::thread::spawn(move || {
        let mut interrupted = false;
        while let Ok(signal) = set.wait() {
            let number = if signal == Signal::SIGINT && interrupted {
                Signal::SIGKILL
            } else {
                signal
            } as i32;
            let first_interrupt = signal == Signal::SIGINT && !interrupted;
            interrupted |= signal == Signal::SIGINT;
            let kill = Request::Kill {
                signal: number,
                all: false,
            };
            if let Err(e) = request(&layout, &id, &kill, Some(REQUEST_TIMEOUT)) {
                eprintln!("tether: pass signal {number} on: {e}");
            } else if first_interrupt && still_running_after(&layout, &id, INTERRUPT_HINT_AFTER) {
                // A PID 1 ignores SIGINT unless it handles it: say what ends it.
                eprintln!("tether: {id} did not stop on SIGINT; Ctrl-C again to kill it");
            }
        }
    });
}
