//! containerd's runtime v2 shim: the same binary, run as `containerd-shim-tether-v2`.
//!
//! containerd runs `containerd-shim-tether-v2 -namespace NS -address ADDR -publish-binary BIN -id ID
//! start` in the bundle; `start` leaves a daemon serving `containerd.task.v2.Task` over ttrpc on a
//! unix socket and prints its address. The daemon creates the container with `runc create` on
//! Create, keeps its own pipes to every process and relays them to the client's fifos (see
//! [`shim_io::relay`]), reaps every child, and sends task events back to containerd. `delete` cleans up after
//! a daemon that is gone. See docs/containerd.md.

mod args;
pub mod conmon;
pub mod daemon;
mod serve;
mod start;

use args::{Action, ShimArgs};
use std::io::Write;

/// What every daemon starts from: the subreaper flag, the reaper (which blocks SIGCHLD: call it
/// before any thread exists, as threads inherit the mask) and the loop's poll, the reaper in it.
fn reaper_and_poll() -> Result<(shim_reaper::Reaper, mio::Poll), String> {
    let failed = |e: std::io::Error| format!("set up the event loop: {e}");
    shim_reaper::set_child_subreaper().map_err(|e| e.to_string())?;
    let mut reaper = shim_reaper::Reaper::new().map_err(|e| e.to_string())?;
    let poll = mio::Poll::new().map_err(failed)?;
    poll.registry()
        .register(
            &mut reaper,
            crate::shim::tokens::REAPER,
            mio::Interest::READABLE,
        )
        .map_err(failed)?;
    Ok((reaper, poll))
}

/// Whether the binary was started under a shim's name (`containerd-shim-*`).
pub fn invoked_as_shim(argv0: &str) -> bool {
    std::path::Path::new(argv0)
        .file_name()
        .and_then(|name| name.to_str())
        .is_some_and(|name| name.starts_with("containerd-shim-"))
}

/// Runs the shim command line; returns the exit code.
pub fn main(args: &[String]) -> u8 {
    let args = match ShimArgs::parse(args) {
        Ok(args) => args,
        Err(message) => {
            eprintln!("containerd-shim-tether-v2: {message}");
            return 2;
        }
    };
    let result = match args.action {
        Action::Version => {
            println!(
                "containerd-shim-tether-v2:\n  Version: {}\n  Revision: {}\n  Runtime: io.containerd.tether.v2",
                env!("CARGO_PKG_VERSION"),
                env!("TETHER_COMMIT")
            );
            Ok(())
        }
        Action::Start => start::start(&args).map(|address| {
            let _ = std::io::stdout().write_all(address.as_bytes());
        }),
        Action::Delete => start::delete(&args).map(|response| {
            let _ = std::io::stdout().write_all(&response);
        }),
        Action::Serve => return serve::serve(&args),
    };
    match result {
        Ok(()) => 0,
        Err(message) => {
            eprintln!("containerd-shim-tether-v2: {message}");
            1
        }
    }
}
