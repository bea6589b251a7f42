//! `tether run` in the foreground, as `docker run`: the container's output here (from its log,
//! every byte from the start; or attached, with `-i`/`-t`), Ctrl-C passed on as SIGINT (a second
//! one sends SIGKILL), tether's exit code the container's, and with `--rm` nothing left after.

use crate::client::{request, REQUEST_TIMEOUT};
use crate::error::{Error, Result};
use crate::logs::LogsOptions;
use nix::sys::signal::{SigSet, Signal};
use shim_core::protocol::{Reply, Request};
use shim_core::{ContainerId, StateLayout};

/// Shows the started container until it exits; returns its exit code.
pub fn run(layout: &StateLayout, id: &ContainerId, attach: bool, remove: bool) -> Result<u8> {
    forward_interrupts(layout, id);
    let code = if attach {
        let keys =
            crate::detach::DetachKeys::parse(crate::detach::DEFAULT).expect("docker's default");
        crate::streams::attach(layout, id.as_str(), false, &keys)?
    } else {
        let follow = LogsOptions {
            follow: true,
            ..LogsOptions::default()
        };
        crate::logs::logs(layout, id, &follow)?;
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
            interrupted |= signal == Signal::SIGINT;
            let kill = Request::Kill {
                signal: number,
                all: false,
            };
            if let Err(e) = request(&layout, &id, &kill, Some(REQUEST_TIMEOUT)) {
                eprintln!("tether: pass signal {number} on: {e}");
            }
        }
    });
}
