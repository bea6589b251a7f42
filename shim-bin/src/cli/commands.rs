//! The CLI commands other than `run` and `logs`.

use crate::cli::args::{Cli, Command, PsFormat, Tail};
use crate::cli::client::{
    daemon_process, dead_daemon, recorded_state, request, resolve_id, DaemonProcess,
    REQUEST_TIMEOUT, STATE_TIMEOUT,
};
use crate::cli::error::{Error, Result};
use shim_core::protocol::{Reply, Request};
use shim_core::{ContainerId, StateLayout};
use shim_runc::{DeleteOptions, DirectWait, Runc};
use std::time::Duration;

/// Runs the parsed command line; returns the exit code.
pub fn dispatch(cli: Cli) -> Result<u8> {
    let layout = StateLayout::new(&cli.state_dir);
    if !matches!(
        cli.command,
        Command::Daemon { .. }
            | Command::Spec { .. }
            | Command::Completion { .. }
            | Command::Man { .. }
    ) {
        crate::cli::client::trusted_root(&layout)?;
        if !matches!(cli.command, Command::Run(_)) {
            crate::cli::client::accessible_root(&layout)?;
        }
    }
    let resolve = |text: &str| resolve_id(&layout, text);
    match cli.command {
        Command::Run(args) => crate::cli::run::run(&cli.state_dir, *args),
        Command::Spec { bundle } => crate::cli::spec::write_default(&bundle),
        // main() hands the daemon its own room before this (see crate::cli::main).
        Command::Daemon { .. } => Err(Error::invalid("tether daemon is started by tether run")),
        Command::Ps {
            all: _,
            format,
            quiet,
            no_trunc,
        } => ps(&layout, format, quiet, no_trunc),
        Command::State { ids } => {
            let (states, failed) = states_of(&layout, &ids);
            let shown = match states.as_slice() {
                [one] if ids.len() == 1 => serde_json::to_string_pretty(one),
                all => serde_json::to_string_pretty(all),
            };
            if !states.is_empty() {
                println!("{}", shown.expect("serializes"));
            }
            Ok(if failed {
                crate::cli::error::TETHER_FAILED
            } else {
                0
            })
        }
        Command::Inspect { format, ids } => {
            let (states, failed) = states_of(&layout, &ids);
            match format {
                None if !states.is_empty() => println!(
                    "{}",
                    serde_json::to_string_pretty(&states).expect("serializes")
                ),
                None => {}
                Some(template) => {
                    for state in &states {
                        let value = serde_json::to_value(state).expect("serializes");
                        println!(
                            "{}",
                            crate::cli::inspect::render(&template, &value)
                                .map_err(Error::invalid)?
                        );
                    }
                }
            }
            Ok(if failed {
                crate::cli::error::TETHER_FAILED
            } else {
                0
            })
        }
        Command::Logs {
            id,
            follow,
            tail,
            since,
            until,
            timestamps,
        } => {
            let now = std::time::SystemTime::now();
            let time = |text: Option<String>| {
                text.map(|t| crate::common::units::parse_time(&t, now).map_err(Error::invalid))
                    .transpose()
            };
            let options = crate::cli::logs::LogsOptions {
                follow,
                tail: match tail {
                    Some(Tail::Last(n)) => Some(n),
                    Some(Tail::All) | None => None,
                },
                since: time(since)?,
                until: time(until)?,
                timestamps,
            };
            crate::cli::logs::logs(&layout, &resolve(&id)?, &options)
        }
        Command::Kill { signal, all, ids } => {
            let (signal, ids) = kill_arguments(&layout, signal, ids)?;
            each(&ids, |text| {
                let id = resolve(text)?;
                simple(&layout, &id, Request::Kill { signal, all })
            })
        }
        Command::Stop { time, ids } => each(&ids, |text| stop(&layout, &resolve(text)?, time)),
        Command::Wait { ids } => {
            let mut last = 0;
            let mut failed = false;
            for text in &ids {
                let waited = resolve(text).and_then(|id| {
                    match request(&layout, &id, &Request::Wait, None)? {
                        Reply::Exit { exit_code } => Ok(exit_code),
                        other => Err(unexpected(other)),
                    }
                });
                match waited {
                    Ok(code) => {
                        println!("{code}");
                        last = code.clamp(0, 255) as u8;
                    }
                    Err(e) => {
                        eprintln!("tether: {e}");
                        failed = true;
                    }
                }
            }
            Ok(match (failed, ids.len()) {
                (true, _) => crate::cli::error::TETHER_FAILED,
                (false, 1) => last,
                (false, _) => 0,
            })
        }
        Command::Pause { ids } => each(&ids, |text| {
            simple(&layout, &resolve(text)?, Request::Pause)
        }),
        Command::Resume { ids } => each(&ids, |text| {
            simple(&layout, &resolve(text)?, Request::Resume)
        }),
        Command::Rm { ids, force } => each(&ids, |text| remove(&layout, &resolve(text)?, force)),
        Command::Top { id, ps_options } => top(&layout, &resolve(&id)?, &ps_options),
        Command::Events => crate::cli::events::events(&layout),
        Command::Stats {
            ids,
            no_stream,
            format,
        } => crate::cli::stats::stats(&layout, &ids, no_stream, format),
        Command::ReopenLog { id } => {
            simple(&layout, &resolve(&id)?, Request::ReopenLog).map(|()| 0)
        }
        Command::Exec(args) => crate::cli::streams::exec(&layout, args),
        Command::Attach {
            id,
            no_stdin,
            detach_keys,
        } => match crate::cli::streams::attach(&layout, &id, no_stdin, &detach_keys)? {
            crate::cli::streams::Attached::Exited(code) => Ok(code),
            crate::cli::streams::Attached::Detached => Ok(0),
            crate::cli::streams::Attached::OutputClosed => Ok(crate::cli::streams::OUTPUT_CLOSED),
        },
        Command::Completion { shell } => {
            crate::cli::completion::print(shell);
            Ok(0)
        }
        Command::Man { dir } => man_pages(&dir),
    }
}

/// The states of `ids`, in order; failures are said on stderr (and flagged).
fn states_of(layout: &StateLayout, ids: &[String]) -> (Vec<shim_core::ContainerState>, bool) {
    let mut states = Vec::new();
    let mut failed = false;
    for text in ids {
        let state = resolve_id(layout, text).and_then(|id| {
            match request(layout, &id, &Request::State, Some(STATE_TIMEOUT))? {
                Reply::State(state) => Ok(*state),
                other => Err(unexpected(other)),
            }
        });
        match state {
            Ok(state) => states.push(state),
            Err(e) => {
                eprintln!("tether: {e}");
                failed = true;
            }
        }
    }
    (states, failed)
}

/// How many ids one command acts on at once.
const AT_ONCE: usize = 32;

/// Does `act` for every id at once (up to [`AT_ONCE`] at a time), as docker does: `stop -t 5 a b`
/// takes 5 s, not 10. Each done id is printed, each failure said on stderr, in the order given
/// (as soon as it and those before it are done); the exit code is 125 if any failed.
fn each(ids: &[String], act: impl Fn(&str) -> Result<()> + Sync) -> Result<u8> {
    let mut failed = false;
    for batch in ids.chunks(AT_ONCE) {
        let (done, results) = std::sync::mpsc::channel();
        std::thread::scope(|scope| {
            for (n, id) in batch.iter().enumerate() {
                let (done, act) = (done.clone(), &act);
                scope.spawn(move || {
                    let _ = done.send((n, act(id)));
                });
            }
            drop(done);
            let mut outcomes: Vec<Option<Result<()>>> = batch.iter().map(|_| None).collect();
            let mut next = 0;
            for (n, result) in results {
                outcomes[n] = Some(result);
                while let Some(result) = outcomes.get_mut(next).and_then(Option::take) {
                    match result {
                        Ok(()) => println!("{}", batch[next]),
                        Err(e) => {
                            eprintln!("tether: {e}");
                            failed = true;
                        }
                    }
                    next += 1;
                }
            }
        });
    }
    Ok(if failed {
        crate::cli::error::TETHER_FAILED
    } else {
        0
    })
}

/// `kill`'s signal and ids: `-s SIG ID...`, or the older `ID SIGNAL` (one id, then something
/// that is a signal and not a container), else KILL, as docker's default. A second word that looks
/// like a signal (a number, a `SIG` name, an upper-case word) and is not one is an error.
fn kill_arguments(
    layout: &StateLayout,
    signal: Option<String>,
    mut ids: Vec<String>,
) -> Result<(i32, Vec<String>)> {
    let parse = |text: &str| crate::cli::signals::parse_signal(text).map_err(Error::invalid);
    if let Some(signal) = signal {
        return Ok((parse(&signal)?, ids));
    }
    if let [_, second] = ids.as_slice() {
        let is_container = second
            .parse::<ContainerId>()
            .is_ok_and(|id| layout.is_container(&id));
        if !is_container {
            match crate::cli::signals::parse_signal(second) {
                Ok(signal) => {
                    ids.pop();
                    return Ok((signal, ids));
                }
                // `kill web 65`: a mistyped signal, refused before anything is signalled.
                Err(e) if crate::cli::signals::looks_like_signal(second) => {
                    return Err(Error::invalid(e))
                }
                Err(_) => {}
            }
        }
    }
    Ok((9, ids))
}

/// How long `stop` waits for the exit after KILL.
const KILL_WAIT: Duration = Duration::from_secs(30);

/// TERM, `grace` for the exit, then KILL. A container that stopped already is stopped.
fn stop(layout: &StateLayout, id: &ContainerId, grace: Duration) -> Result<()> {
    let exited = |layout: &StateLayout| -> Result<bool> {
        match request(layout, id, &Request::State, Some(STATE_TIMEOUT))? {
            Reply::State(state) => Ok(state.exit.is_some()),
            other => Err(unexpected(other)),
        }
    };
    // Sent, or not needed: a signal that fails because the container exited meanwhile is moot.
    let sent = |signal: i32| -> Result<bool> {
        let kill = Request::Kill { signal, all: false };
        match request(layout, id, &kill, Some(REQUEST_TIMEOUT)) {
            Ok(_) => Ok(true),
            Err(_) if exited(layout)? => Ok(false),
            Err(e) => Err(e),
        }
    };
    if exited(layout)? || !sent(15)? {
        return Ok(());
    }
    if !grace.is_zero() && request(layout, id, &Request::Wait, Some(grace)).is_ok() {
        return Ok(());
    }
    if exited(layout)? || !sent(9)? {
        return Ok(());
    }
    request(layout, id, &Request::Wait, Some(KILL_WAIT))?;
    Ok(())
}

/// Whether `pid` is a live (not zombie) `tether daemon` serving container `id`: a recorded pid may
/// have been reused since, and is never signalled then.
fn is_daemon_of(pid: i32, id: &ContainerId) -> bool {
    let alive = !matches!(
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .as_deref()
            .and_then(|stat| stat.rsplit_once(") "))
            .and_then(|(_, rest)| rest.chars().next()),
        None | Some('Z' | 'X')
    );
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let mut args = cmdline.split(|&b| b == 0);
    let ours = args.nth(1) == Some(b"daemon".as_slice())
        && String::from_utf8_lossy(&cmdline).contains(&format!("\"id\":\"{id}\""));
    alive && ours
}

/// `top`: the container's processes, as `ps` shows them.
fn top(layout: &StateLayout, id: &ContainerId, ps_options: &[String]) -> Result<u8> {
    let pids = match request(layout, id, &Request::Pids, Some(REQUEST_TIMEOUT))? {
        Reply::Pids { pids } => pids,
        other => return Err(unexpected(other)),
    };
    if !ps_options.is_empty() {
        return top_with_ps(&pids, ps_options);
    }
    println!("{:>8} {:>8} {:>6}  CMD", "PID", "PPID", "UID");
    for pid in pids {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next())
                .unwrap_or("?")
                .to_owned()
        };
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let mut command = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if command.trim().is_empty() {
            command = format!("[{}]", field("Name:"));
        }
        println!(
            "{pid:>8} {:>8} {:>6}  {}",
            field("PPid:"),
            field("Uid:"),
            command.trim_end()
        );
    }
    Ok(0)
}

/// `top ID OPTIONS`: the host's `ps OPTIONS -p PIDS` (so `-o pid,comm` alone shows them), its
/// header and the rows of `pids` (found by its PID column: `-e` would add every process).
fn top_with_ps(pids: &[i32], options: &[String]) -> Result<u8> {
    let listed: Vec<String> = pids.iter().map(i32::to_string).collect();
    let output = std::process::Command::new("ps")
        .args(options)
        .arg("-p")
        .arg(listed.join(","))
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| Error::failed(format!("top: ps: {e}")))?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        let said = String::from_utf8_lossy(&output.stderr);
        return Err(Error::invalid(format!(
            "top: ps {}: {}",
            options.join(" "),
            said.lines().next().unwrap_or("failed")
        )));
    }
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let column = header
        .split_whitespace()
        .position(|name| name == "PID")
        .ok_or_else(|| {
            Error::invalid(format!(
                "top: ps {} shows no PID column (add -o pid or leave the options out)",
                options.join(" ")
            ))
        })?;
    println!("{header}");
    for line in lines {
        let pid = line
            .split_whitespace()
            .nth(column)
            .and_then(|p| p.parse::<i32>().ok());
        if pid.is_some_and(|pid| pids.contains(&pid)) {
            println!("{line}");
        }
    }
    Ok(0)
}

/// `tether man DIR`: one page per command, from the same definition as `--help`.
fn man_pages(dir: &std::path::Path) -> Result<u8> {
    let command = <Cli as clap::CommandFactory>::command();
    std::fs::create_dir_all(dir).map_err(|e| Error::failed(format!("{}: {e}", dir.display())))?;
    clap_mangen::generate_to(command, dir)
        .map_err(|e| Error::failed(format!("man pages in {}: {e}", dir.display())))?;
    Ok(0)
}

fn simple(layout: &StateLayout, id: &ContainerId, req: Request) -> Result<()> {
    request(layout, id, &req, Some(REQUEST_TIMEOUT))?;
    Ok(())
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

fn ps(layout: &StateLayout, format: PsFormat, quiet: bool, no_trunc: bool) -> Result<u8> {
    let ids = layout
        .list()
        .map_err(|e| Error::failed(format!("state dir {}: {e}", layout.root().display())))?;
    let mut rows = Vec::new();
    for id in ids {
        if let Err(e) = crate::cli::client::trusted_entry(layout, &id) {
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
    // Newest first, as docker.
    rows.sort_by(|a, b| b.state.created_at.cmp(&a.state.created_at));
    if quiet {
        for row in &rows {
            println!("{}", row.state.id);
        }
        return Ok(0);
    }
    match format {
        PsFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(&rows).expect("serializes")
        ),
        PsFormat::Table => print_table(&rows, no_trunc),
    }
    Ok(0)
}

/// Ids longer than this are cut to [`SHORT_ID`] characters in the table (a unique prefix names a
/// container everywhere).
const LONG_ID: usize = 32;
const SHORT_ID: usize = 12;

/// `ps`'s table: columns as wide as their widest value, so any id length lines up.
fn print_table(rows: &[PsRow], no_trunc: bool) {
    let now = std::time::SystemTime::now();
    let shown = |id: &str| -> String {
        if no_trunc || id.chars().count() <= LONG_ID {
            id.to_owned()
        } else {
            id.chars().take(SHORT_ID).collect()
        }
    };
    let lines: Vec<[String; 6]> = rows
        .iter()
        .map(|row| {
            let status = if row.shim == "running" {
                row.state.status.to_string()
            } else {
                format!("unknown (shim {})", row.shim)
            };
            let created = crate::common::units::parse_rfc3339(&row.state.created_at)
                .map(|at| crate::common::units::age(at, now))
                .unwrap_or_else(|| row.state.created_at.clone());
            let exit = row
                .state
                .exit
                .as_ref()
                .map(|e| e.code.to_string())
                .unwrap_or_else(|| "-".into());
            [
                shown(row.state.id.as_str()),
                row.state.pid.to_string(),
                command_of(&row.state.bundle),
                status,
                created,
                exit,
            ]
        })
        .collect();
    let header = ["ID", "PID", "COMMAND", "STATUS", "CREATED", "EXIT"].map(String::from);
    let mut widths = header.clone().map(|h| h.len());
    for line in &lines {
        for (width, cell) in widths.iter_mut().zip(line) {
            *width = (*width).max(cell.chars().count());
        }
    }
    for line in std::iter::once(&header).chain(&lines) {
        let [id, pid, command, status, created, exit] = line;
        let [w_id, w_pid, w_command, w_status, w_created, w_exit] = widths;
        println!(
            "{id:<w_id$}  {pid:>w_pid$}  {command:<w_command$}  {status:<w_status$}  {created:<w_created$}  {exit:>w_exit$}"
        );
    }
}

/// The container's command as `docker ps` shows it: its spec's args (without `--init`'s init),
/// quoted, cut to 20 characters ("" when the bundle cannot be read).
fn command_of(bundle: &std::path::Path) -> String {
    use std::io::Read;
    let mut text = String::new();
    let read = std::fs::File::open(bundle.join("config.json"))
        .and_then(|file| file.take(1 << 20).read_to_string(&mut text));
    let args = read
        .ok()
        .and_then(|_| serde_json::from_str::<serde_json::Value>(&text).ok())
        .and_then(|spec| {
            let args = spec["process"]["args"].as_array()?.clone();
            // The init `run --init` put first is not the container's command.
            let skip =
                usize::from(args.first().and_then(|a| a.as_str()) == Some(crate::init::PATH));
            Some(
                args.iter()
                    .skip(skip)
                    .filter_map(|a| a.as_str())
                    .collect::<Vec<_>>()
                    .join(" "),
            )
        })
        .unwrap_or_default();
    let cut: String = args.chars().take(20).collect();
    if cut.len() < args.len() {
        format!("\"{cut}…\"")
    } else {
        format!("\"{cut}\"")
    }
}

/// `rm [-f]` of one container (and `run --replace`'s removal).
pub fn remove(layout: &StateLayout, id: &ContainerId, force: bool) -> Result<()> {
    match request(
        layout,
        id,
        &Request::Delete { force },
        Some(REQUEST_TIMEOUT),
    ) {
        Ok(_) => Ok(()),
        // -f: a daemon that does not answer (stopped, hung) is killed, and the container removed.
        Err(error) if force && error.is_unanswered() => remove_without_daemon(layout, id, force),
        Err(error) => {
            // Only a dead daemon is cleaned up here; any other error stands.
            let socket_answers =
                crate::common::sockpath::connect(&layout.control_socket(id)).is_ok();
            if socket_answers || !layout.is_container(id) {
                return Err(error);
            }
            remove_without_daemon(layout, id, force)
        }
    }
}

/// How long `rm -f` waits for a daemon it killed to be gone.
const KILLED_DAEMON_WAIT: Duration = Duration::from_secs(10);

/// `rm` for a container whose daemon is dead or does not answer: delete it with the runtime, then
/// remove its state. A daemon that still lives is killed first (-f), or that is an error: its
/// state is never removed from under it.
fn remove_without_daemon(layout: &StateLayout, id: &ContainerId, force: bool) -> Result<()> {
    // The runtime named in state.json is run only if nobody else could have written it.
    crate::cli::client::trusted_entry(layout, id)?;
    if let Some(pid) =
        crate::cli::client::daemon_pid(layout, id).filter(|&pid| is_daemon_of(pid, id))
    {
        if !force {
            return Err(Error::failed(format!(
                "container {id}: its shim daemon (pid {pid}) runs but does not answer; `tether rm -f {id}` kills it"
            )));
        }
        let pid = nix::unistd::Pid::from_raw(pid);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        let deadline = std::time::Instant::now() + KILLED_DAEMON_WAIT;
        while is_daemon_of(pid.as_raw(), id) {
            if std::time::Instant::now() >= deadline {
                return Err(Error::failed(format!(
                    "container {id}: its shim daemon (pid {pid}) is still there {}s after SIGKILL",
                    KILLED_DAEMON_WAIT.as_secs()
                )));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    if let Some(state) = recorded_state(layout, id) {
        let mut runc = Runc::new(&state.runtime).timeout(Duration::from_secs(
            crate::common::config::DEFAULT_RUNTIME_TIMEOUT_SECS,
        ));
        if let Some(root) = &state.runtime_root {
            runc = runc.root(root);
        }
        if let Err(e) = runc.delete(id.as_str(), DeleteOptions { force }, &mut DirectWait) {
            if e.kind() != shim_runc::FailureKind::ContainerMissing {
                return Err(if force {
                    Error::failed(e.to_string())
                } else {
                    Error::failed(format!("{}: {e}; use -f to force", dead_daemon(layout, id)))
                });
            }
        }
    }
    // Its network, when its daemon could not detach it: the record would go with the dir.
    let record = layout.container_dir(id).join(crate::shim::network::RECORD);
    if let Err(e) = crate::shim::network::detach(&record, &mut DirectWait) {
        if !force {
            return Err(Error::failed(format!(
                "container {id}: {e}; use -f to remove it all the same"
            )));
        }
        eprintln!("tether: container {id}: {e}; removed all the same");
    }
    crate::shim::mounts::remove_container_dir(&layout.container_dir(id)).map_err(|e| {
        Error::failed(format!(
            "remove {}: {e}",
            layout.container_dir(id).display()
        ))
    })?;
    Ok(())
}
