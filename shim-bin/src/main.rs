//! `tether`: a container shim. See `tether --help`, README.md and docs/.
//!
//! `unsafe` is denied in this crate but for one module, [`sys`]: the system calls that need it
//! (signals by number and the init's signal mask, ioctls on terminals, an fd received over a socket or inherited at a
//! fixed number, `malloc_trim`, and the `pre_exec` hooks between fork and exec),
//! each behind a safe function that says why it is sound.
#![deny(unsafe_code)]

mod cli;
mod client;
mod commands;
mod completion;
mod config;
mod detach;
mod error;
mod events;
mod foreground;
mod front;
mod habits;
mod init;
mod inspect;
mod launch;
mod logs;
mod oom;
mod run;
mod shim;
mod signals;
mod sockpath;
mod spec;
mod stats;
mod streams;
mod sys;
mod terminal;
mod time;
mod tokens;
mod units;
mod users;

use clap::Parser;
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
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let words: Vec<String> = std::env::args().skip(1).collect();
            if let Some(hint) = habits::hint(&words, error.kind()) {
                eprintln!("tether: {hint}");
                return ExitCode::from(error::TETHER_FAILED);
            }
            // --help and --version are answers, not failures; a usage error is tether's own,
            // said in one line (clap's own tip kept in it).
            if !error.use_stderr() {
                let _ = error.print();
                return ExitCode::from(0);
            }
            eprintln!("tether: {}", habits::one_line(&error.render().to_string()));
            return ExitCode::from(error::TETHER_FAILED);
        }
    };
    match commands::dispatch(cli) {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            eprintln!("tether: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}
