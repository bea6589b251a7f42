//! `tether`: a container shim. See `tether --help`, README.md and docs/.

mod cli;
mod client;
mod commands;
mod config;
mod daemon;
mod error;
mod logs;
mod run;
mod signals;
mod time;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match commands::dispatch(cli) {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            eprintln!("tether: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}
