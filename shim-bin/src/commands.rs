//! The CLI commands other than `run` and `logs`.

use crate::cli::{Cli, Command, PsFormat};
use crate::client::{
    daemon_process, dead_daemon, parse_id, recorded_state, request, DaemonProcess, REQUEST_TIMEOUT,
    STATE_TIMEOUT,
};
use crate::error::{Error, Result};
use shim_core::protocol::{Reply, Request};
use shim_core::{ContainerId, StateLayout};
use shim_runc::{DeleteOptions, DirectWait, Runc};
use std::time::Duration;

/// Runs the parsed command line; returns the exit code.
pub fn dispatch(cli: Cli) -> Result<u8> {
    let layout = StateLayout::new(&cli.state_dir);
    if !matches!(cli.command, Command::Daemon { .. }) {
        crate::client::trusted_root(&layout)?;
    }
    match cli.command {
        Command::Run(args) => crate::run::run(&cli.state_dir, args),
        Command::Daemon { config } => Ok(crate::daemon::main(&config)),
        Command::Ps { format } => ps(&layout, format),
        Command::State { id } => {
            let id = parse_id(&id)?;
            match request(&layout, &id, &Request::State, Some(STATE_TIMEOUT))? {
                Reply::State(state) => {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&state).expect("serializes")
                    );
                    Ok(0)
                }
                other => Err(unexpected(other)),
            }
        }
        Command::Logs {
            id,
            follow,
            tail,
            timestamps,
        } => crate::logs::logs(&layout, &parse_id(&id)?, follow, tail, timestamps),
        Command::Kill { id, signal, all } => {
            let id = parse_id(&id)?;
            let signal = crate::signals::parse_signal(&signal).map_err(Error::invalid)?;
            simple(&layout, &id, Request::Kill { signal, all })
        }
        Command::Wait { id } => {
            let id = parse_id(&id)?;
            match request(&layout, &id, &Request::Wait, None)? {
                Reply::Exit { exit_code } => {
                    println!("{exit_code}");
                    Ok(exit_code.clamp(0, 255) as u8)
                }
                other => Err(unexpected(other)),
            }
        }
        Command::Pause { id } => simple(&layout, &parse_id(&id)?, Request::Pause),
        Command::Resume { id } => simple(&layout, &parse_id(&id)?, Request::Resume),
        Command::Rm { id, force } => rm(&layout, &parse_id(&id)?, force),
        Command::Exec(args) => crate::streams::exec(&layout, args),
        Command::Attach { id, no_stdin } => crate::streams::attach(&layout, &id, no_stdin),
    }
}

fn simple(layout: &StateLayout, id: &ContainerId, req: Request) -> Result<u8> {
    request(layout, id, &req, Some(REQUEST_TIMEOUT))?;
    Ok(0)
}

fn unexpected(reply: Reply) -> Error {
    Error::failed(format!("unexpected answer from the shim daemon: {reply:?}"))
}

/// How long `ps` waits for each daemon's state (each answers from memory).
const PS_TIMEOUT: Duration = Duration::from_secs(1);

/// One row of `tether ps`.
#[derive(serde::Serialize)]
struct PsRow {
    #[serde(flatten)]
    state: shim_core::ContainerState,
    /// `running` when the daemon answered, `dead` when it did not.
    shim: &'static str,
}

fn ps(layout: &StateLayout, format: PsFormat) -> Result<u8> {
    let ids = layout
        .list()
        .map_err(|e| Error::failed(format!("state dir {}: {e}", layout.root().display())))?;
    let mut rows = Vec::new();
    for id in ids {
        if let Err(e) = crate::client::trusted_entry(layout, &id) {
            eprintln!("tether: {e}");
            continue;
        }
        let answer = match daemon_process(layout, &id) {
            DaemonProcess::Alive | DaemonProcess::Unknown => {
                request(layout, &id, &Request::State, Some(PS_TIMEOUT)).ok()
            }
            DaemonProcess::Stopped(_) | DaemonProcess::Gone => None,
        };
        match answer {
            Some(Reply::State(state)) => rows.push(PsRow {
                state: *state,
                shim: "running",
            }),
            _ => {
                // A daemon that is gone, stopped or too slow (or a container still starting).
                let shim = match daemon_process(layout, &id) {
                    DaemonProcess::Stopped(_) => "stopped",
                    DaemonProcess::Alive => "not answering",
                    DaemonProcess::Gone | DaemonProcess::Unknown => "dead",
                };
                if let Some(state) = recorded_state(layout, &id) {
                    rows.push(PsRow { state, shim });
                }
            }
        }
    }
    match format {
        PsFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(&rows).expect("serializes")
        ),
        PsFormat::Table => {
            // Columns as wide as their widest value, so any id length lines up.
            let id_width = rows
                .iter()
                .map(|row| row.state.id.as_str().len())
                .max()
                .unwrap_or(0)
                .max(2);
            println!(
                "{:<id_width$} {:>8} {:<22} {:<30} {:>4}",
                "ID", "PID", "STATUS", "CREATED", "EXIT"
            );
            for row in rows {
                let status = if row.shim == "running" {
                    row.state.status.to_string()
                } else {
                    format!("unknown (shim {})", row.shim)
                };
                let exit = row
                    .state
                    .exit
                    .as_ref()
                    .map(|e| e.code.to_string())
                    .unwrap_or_else(|| "-".into());
                println!(
                    "{:<id_width$} {:>8} {:<22} {:<30} {:>4}",
                    row.state.id, row.state.pid, status, row.state.created_at, exit
                );
            }
        }
    }
    Ok(0)
}

fn rm(layout: &StateLayout, id: &ContainerId, force: bool) -> Result<u8> {
    match request(
        layout,
        id,
        &Request::Delete { force },
        Some(REQUEST_TIMEOUT),
    ) {
        Ok(_) => Ok(0),
        Err(error) => {
            // Only a dead daemon is cleaned up here; any other error stands.
            let socket_answers = crate::sockpath::connect(&layout.control_socket(id)).is_ok();
            if socket_answers || !layout.container_dir(id).is_dir() {
                return Err(error);
            }
            remove_without_daemon(layout, id, force)
        }
    }
}

/// `rm` for a container whose daemon died: delete it with the runtime, then remove its state.
fn remove_without_daemon(layout: &StateLayout, id: &ContainerId, force: bool) -> Result<u8> {
    // The runtime named in state.json is run only if nobody else could have written it.
    crate::client::trusted_entry(layout, id)?;
    if let Some(state) = recorded_state(layout, id) {
        let mut runc = Runc::new(&state.runtime);
        if let Some(root) = &state.runtime_root {
            runc = runc.root(root);
        }
        if let Err(e) = runc.delete(id.as_str(), DeleteOptions { force }, &mut DirectWait) {
            let gone = e
                .runtime_message()
                .is_some_and(|m| m.contains("does not exist") || m.contains("No such file"));
            if !gone {
                return Err(if force {
                    Error::failed(e.to_string())
                } else {
                    Error::failed(format!("{}: {e}; use -f to force", dead_daemon(layout, id)))
                });
            }
        }
    }
    std::fs::remove_dir_all(layout.container_dir(id)).map_err(|e| {
        Error::failed(format!(
            "remove {}: {e}",
            layout.container_dir(id).display()
        ))
    })?;
    Ok(0)
}
