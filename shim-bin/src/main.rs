//! `tether`: a container shim. See `tether --help`, README.md and docs/.
//!
//! One binary, four rooms, chosen by the name it runs under and its first argument:
//!
//! - [`cli`]: the `tether` command line;
//! - [`launch`]: `tether daemon` (one per container, started by `tether run`),
//!   `containerd-shim-tether-v2` and `conmon` (podman's), each setting up a [`shim`] and its doors;
//! - [`shim`]: the supervisor, which owns the container, its processes and their output;
//! - [`front`]: the doors, which map a wire (tether's control socket, containerd's ttrpc, podman's
//!   conmon contract) to the
//!   supervisor's operations;
//! - [`init`]: `tether-init`, the init `run --init` puts in a container;
//! - [`common`]: what they share.
//!
//! `unsafe` is denied in this crate but for one module, [`common::sys`]: the system calls that need it
//! (signals by number and the init's signal mask, ioctls on terminals, an fd received over a socket, accepted, or
//! inherited at a fixed number, `malloc_trim` and `madvise` on the main thread's unused stack, `fork` while single-threaded (podman's conmon forks), and the
//! `pre_exec` hooks between fork and exec),
//! each behind a safe function that says why it is sound.
#![deny(unsafe_code)]

mod cli;
mod common;
mod front;
mod init;
mod launch;
mod shim;

use std::process::ExitCode;

fn main() -> ExitCode {
    // The daemon is started by `tether run` with a fixed argument shape; skipping the full command
    // line parser keeps its start-up allocations (and so its resident memory) small.
    let argv: Vec<String> = std::env::args().collect();
    if argv
        .first()
        .is_some_and(|argv0| init::invoked_as_init(argv0))
    {
        return ExitCode::from(init::main(&argv[1..]));
    }
    if argv
        .first()
        .is_some_and(|argv0| launch::conmon::invoked_as_conmon(argv0))
    {
        return ExitCode::from(launch::conmon::main(&argv[1..]));
    }
    if argv
        .first()
        .is_some_and(|argv0| launch::invoked_as_shim(argv0))
    {
        return ExitCode::from(launch::main(&argv[1..]));
    }
    let mut args = argv.into_iter();
    if let (Some(_), Some(daemon), Some(flag), Some(config), None) = (
        args.next(),
        args.next(),
        args.next(),
        args.next(),
        args.next(),
    ) {
        if daemon == "daemon" && flag == "--config" {
            return ExitCode::from(launch::daemon::main(&config));
        }
    }
    match cli::main() {
        cli::Outcome::Exit(code) => ExitCode::from(code),
        cli::Outcome::Daemon(config) => ExitCode::from(launch::daemon::main(&config)),
    }
}
