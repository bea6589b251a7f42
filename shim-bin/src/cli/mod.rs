//! The `tether` command line: what a person (or a unit file, or a script) runs. It parses the
//! command line, talks to each container's daemon over its control socket, reads what the
//! daemons record in the state directory, and starts a daemon for `run`. It never supervises a
//! container itself, and imports nothing from the doors (`front/`) or the launchers (`launch/`).
//!
//! - [`args`]: the command line (clap); [`commands`] runs it, [`run`] and [`logs`] the large ones;
//! - [`client`]: requests to a daemon, and the state directory as the CLI reads it;
//! - [`foreground`], [`streams`], [`terminal`], [`detach`]: a foreground container or exec's stdio;
//! - [`events`], [`stats`], [`inspect`], [`signals`], [`completion`], [`spec`], [`habits`]: the
//!   rest of the commands and their help;
//! - [`error`]: the CLI's errors and exit codes (125, 126, 127, as docker's).

pub mod args;
pub mod client;
pub mod commands;
pub mod completion;
pub mod detach;
pub mod error;
pub mod events;
pub mod foreground;
pub mod habits;
pub mod inspect;
pub mod logs;
pub mod run;
pub mod signals;
pub mod spec;
pub mod stats;
pub mod streams;
pub mod terminal;

use clap::Parser;

/// What the command line asked for.
pub enum Outcome {
    /// A command ran; exit with this code.
    Exit(u8),
    /// `tether daemon --config JSON`, in a shape the fast path in main() did not take: the daemon
    /// is not the CLI's to run.
    Daemon(String),
}

/// Parses the command line and runs the command.
pub fn main() -> Outcome {
    let cli = match args::Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let words: Vec<String> = std::env::args().skip(1).collect();
            if let Some(hint) = habits::hint(&words, error.kind()) {
                eprintln!("tether: {hint}");
                return Outcome::Exit(error::TETHER_FAILED);
            }
            // --help and --version are answers, not failures; a usage error is tether's own,
            // said in one line (clap's own tip kept in it).
            if !error.use_stderr() {
                let _ = error.print();
                return Outcome::Exit(0);
            }
            eprintln!("tether: {}", habits::one_line(&error.render().to_string()));
            return Outcome::Exit(error::TETHER_FAILED);
        }
    };
    if let args::Command::Daemon { config } = cli.command {
        return Outcome::Daemon(config);
    }
    match commands::dispatch(cli) {
        Ok(code) => Outcome::Exit(code),
        Err(error) => {
            eprintln!("tether: {error}");
            Outcome::Exit(error.exit_code())
        }
    }
}
