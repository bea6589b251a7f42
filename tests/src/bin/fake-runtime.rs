//! `fake-runtime`: a stand-in for runc, so the supervisor's rules can be tested without root. It
//! speaks the part of runc's command line tether uses, keeps its state under `--root`, and runs
//! the bundle's `process.args` on the host, as they are (no namespaces, no rootfs, no cgroup): a
//! container is a process group, whose leader is its init.
//!
//! - `create`/`run --bundle B --pid-file P [--detach] ID`: starts the init in a new process group,
//!   writes its pid; `create` holds it until `start ID`.
//! - `exec --detach --pid-file P --process F ID`: starts `F`'s args in the container's group.
//! - `kill [--all] ID SIGNAL`, `delete [--force] ID`, `state ID`, `ps --format json ID`, `list`,
//!   `pause`/`resume ID` (SIGSTOP/SIGCONT to the group), `update ...` (accepted, does nothing).
//! - A command that cannot be found or run fails as runc says it, in its `--log` (JSON) and on
//!   stderr, with exit 1.
//!
//! `FAKE_RUNTIME_CALLS=FILE` appends each call's arguments to FILE, a line each.

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;

struct Call {
    root: PathBuf,
    log: Option<PathBuf>,
    command: String,
    /// `--name value` flags and bare `--flag`s (value empty), after the command.
    flags: Vec<(String, String)>,
    /// The rest: the id, then e.g. a signal.
    operands: Vec<String>,
}

/// Flags of runc's that take no value.
const BARE: &[&str] = &[
    "--detach",
    "-d",
    "--force",
    "-f",
    "--all",
    "-a",
    "--no-pivot",
    "--no-new-keyring",
    "--systemd-cgroup",
    "--debug",
    "--tty",
    "-t",
];

fn parse(args: Vec<String>) -> Result<Call, String> {
    let mut root = std::env::temp_dir().join(format!("fake-runtime-{}", nix::unistd::getuid()));
    let mut log = None;
    let mut args = args.into_iter().peekable();
    let command = loop {
        let Some(arg) = args.next() else {
            return Err("no command".into());
        };
        match arg.as_str() {
            "--root" => root = PathBuf::from(args.next().ok_or("--root needs a value")?),
            "--log" => log = Some(PathBuf::from(args.next().ok_or("--log needs a value")?)),
            "--log-format" => {
                args.next();
            }
            "--systemd-cgroup" | "--debug" => {}
            "--version" | "-v" => break "--version".to_owned(),
            other if other.starts_with('-') => return Err(format!("unknown global flag {other}")),
            _ => break arg,
        }
    };
    let mut flags = Vec::new();
    let mut operands = Vec::new();
    while let Some(arg) = args.next() {
        if let Some((name, value)) = arg.split_once('=').filter(|_| arg.starts_with("--")) {
            flags.push((name.to_owned(), value.to_owned()));
        } else if BARE.contains(&arg.as_str()) {
            flags.push((arg, String::new()));
        } else if arg.starts_with('-') && arg.len() > 1 && operands.is_empty() {
            let value = args.next().unwrap_or_default();
            flags.push((arg, value));
        } else {
            operands.push(arg);
        }
    }
    Ok(Call {
        root,
        log,
        command,
        flags,
        operands,
    })
}

impl Call {
    fn flag(&self, name: &str) -> Option<&str> {
        self.flags
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn has(&self, names: &[&str]) -> bool {
        self.flags.iter().any(|(n, _)| names.contains(&n.as_str()))
    }

    fn id(&self) -> Result<&str, String> {
        self.operands
            .first()
            .map(String::as_str)
            .ok_or_else(|| format!("{}: no container id", self.command))
    }

    fn dir(&self) -> Result<PathBuf, String> {
        Ok(self.root.join(self.id()?))
    }

    /// The container's init, if it was made.
    fn pid(&self) -> Result<i32, String> {
        let id = self.id()?;
        std::fs::read_to_string(self.dir()?.join("pid"))
            .ok()
            .and_then(|p| p.trim().parse().ok())
            .ok_or_else(|| format!("container \"{id}\" does not exist"))
    }
}

/// runc's status of a container whose init is `pid`.
fn status(dir: &Path, pid: i32) -> &'static str {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat
        .rsplit_once(") ")
        .and_then(|(_, rest)| rest.chars().next());
    match state {
        None | Some('Z') | Some('X') => "stopped",
        _ if dir.join("paused").exists() => "paused",
        _ if dir.join("start").exists() => "created",
        _ => "running",
    }
}

/// A process spec's args and env (config.json's `process`, or exec's `--process` file).
fn process_of(json: &serde_json::Value) -> (Vec<String>, Vec<(String, String)>) {
    let strings = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let env = strings(&json["env"])
        .into_iter()
        .filter_map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
        })
        .collect();
    (strings(&json["args"]), env)
}

/// Where `program` is found, as runc's exec looks: a path as it is, a name in the process's PATH.
fn resolve(program: &str, env: &[(String, String)]) -> Result<PathBuf, String> {
    use std::os::unix::fs::PermissionsExt;
    let candidates: Vec<PathBuf> = if program.contains('/') {
        vec![PathBuf::from(program)]
    } else {
        let path = env
            .iter()
            .find(|(k, _)| k == "PATH")
            .map_or("/usr/bin:/bin", |(_, v)| v.as_str());
        path.split(':')
            .map(|d| Path::new(d).join(program))
            .collect()
    };
    for candidate in &candidates {
        match std::fs::metadata(candidate) {
            Ok(m) if m.is_dir() => {
                return Err(format!("exec: \"{program}\": is a directory"));
            }
            Ok(m) if m.permissions().mode() & 0o111 == 0 => {
                return Err(format!("exec: \"{program}\": permission denied"));
            }
            Ok(_) => return Ok(candidate.clone()),
            Err(_) => continue,
        }
    }
    Err(format!(
        "exec: \"{program}\": executable file not found in $PATH"
    ))
}

/// Starts a process of the container: in its own new group (`group` 0, the init) or the init's.
fn spawn(
    args: &[String],
    env: &[(String, String)],
    group: i32,
    hold: Option<&Path>,
) -> Result<u32, String> {
    let program = args.first().ok_or("process.args is empty")?;
    let resolved = resolve(program, env)?;
    let mut command = match hold {
        // Held until `start` writes to the fifo: the shell opens it, then execs the process.
        Some(fifo) => {
            let mut sh = Command::new("/bin/sh");
            sh.arg("-c")
                .arg("read _ < \"$0\"; exec \"$@\"")
                .arg(fifo)
                .arg(&resolved)
                .args(&args[1..]);
            sh
        }
        None => {
            let mut command = Command::new(&resolved);
            command.args(&args[1..]);
            command
        }
    };
    command
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .current_dir("/")
        .process_group(group);
    let child = command
        .spawn()
        .map_err(|e| format!("exec: \"{program}\": {e}"))?;
    Ok(child.id())
}

fn signal_of(text: &str) -> Result<Signal, String> {
    if let Ok(number) = text.parse::<i32>() {
        return Signal::try_from(number).map_err(|e| format!("signal {text}: {e}"));
    }
    let name = text.to_ascii_uppercase();
    let name = if name.starts_with("SIG") {
        name
    } else {
        format!("SIG{name}")
    };
    Signal::from_str(&name).map_err(|e| format!("signal {text}: {e}"))
}

fn write_pid(path: Option<&str>, pid: u32) -> Result<(), String> {
    if let Some(path) = path {
        std::fs::write(path, pid.to_string()).map_err(|e| format!("pid file {path}: {e}"))?;
    }
    Ok(())
}

fn run(call: &Call) -> Result<(), String> {
    match call.command.as_str() {
        "--version" => {
            println!("fake-runtime version 1.1.5\nspec: 1.0.2-dev");
            Ok(())
        }
        // The runtime's commands take the id last, after their flags.
        "create" | "run" => {
            let id = call.id()?;
            let dir = call.dir()?;
            if dir.exists() {
                return Err(format!("container with id exists: {id}"));
            }
            let bundle = PathBuf::from(call.flag("--bundle").or(call.flag("-b")).unwrap_or("."));
            let spec: serde_json::Value = std::fs::read(bundle.join("config.json"))
                .map_err(|e| format!("config.json: {e}"))
                .and_then(|j| serde_json::from_slice(&j).map_err(|e| e.to_string()))?;
            let (args, env) = process_of(&spec["process"]);
            std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
            let hold = (call.command == "create").then(|| dir.join("start"));
            if let Some(fifo) = &hold {
                nix::unistd::mkfifo(fifo, nix::sys::stat::Mode::from_bits_truncate(0o600))
                    .map_err(|e| format!("fifo: {e}"))?;
            }
            let pid = match spawn(&args, &env, 0, hold.as_deref()) {
                Ok(pid) => pid,
                Err(e) => {
                    let _ = std::fs::remove_dir_all(&dir);
                    return Err(format!(
                        "runc create failed: unable to start container process: {e}"
                    ));
                }
            };
            std::fs::write(dir.join("pid"), pid.to_string()).map_err(|e| e.to_string())?;
            std::fs::write(dir.join("bundle"), bundle.to_string_lossy().as_bytes())
                .map_err(|e| e.to_string())?;
            write_pid(call.flag("--pid-file"), pid)
        }
        "start" => {
            let dir = call.dir()?;
            call.pid()?;
            let fifo = dir.join("start");
            let mut opened = std::fs::OpenOptions::new()
                .write(true)
                .open(&fifo)
                .map_err(|_| "cannot start a container that is not created".to_owned())?;
            let _ = std::fs::remove_file(&fifo);
            opened.write_all(b"\n").map_err(|e| e.to_string())
        }
        "state" => {
            let pid = call.pid()?;
            let dir = call.dir()?;
            let bundle = std::fs::read_to_string(dir.join("bundle")).unwrap_or_default();
            let state = serde_json::json!({
                "ociVersion": "1.0.2-dev",
                "id": call.id()?,
                "pid": pid,
                "status": status(&dir, pid),
                "bundle": bundle,
                "rootfs": Path::new(&bundle).join("rootfs"),
                "created": "2026-01-01T00:00:00Z",
                "owner": "",
            });
            println!("{state:#}");
            Ok(())
        }
        "kill" => {
            let pid = call.pid()?;
            let signal = signal_of(call.operands.get(1).map_or("TERM", String::as_str))?;
            if status(&call.dir()?, pid) == "stopped" && !call.has(&["--all", "-a"]) {
                return Err("container not running".into());
            }
            let sent = if call.has(&["--all", "-a"]) {
                killpg(Pid::from_raw(pid), signal)
            } else {
                kill(Pid::from_raw(pid), signal)
            };
            match sent {
                Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
                Err(e) => Err(format!("kill: {e}")),
            }
        }
        "delete" => {
            let dir = call.dir()?;
            let pid = call.pid()?;
            if status(&dir, pid) != "stopped" {
                if !call.has(&["--force", "-f"]) {
                    return Err("cannot delete container that is not stopped".into());
                }
                let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
            }
            std::fs::remove_dir_all(&dir).map_err(|e| e.to_string())
        }
        "exec" => {
            let pid = call.pid()?;
            if status(&call.dir()?, pid) != "running" {
                return Err("cannot exec in a stopped container".into());
            }
            let process = call
                .flag("--process")
                .or(call.flag("-p"))
                .ok_or("exec: no --process")?;
            let spec: serde_json::Value = std::fs::read(process)
                .map_err(|e| format!("{process}: {e}"))
                .and_then(|j| serde_json::from_slice(&j).map_err(|e| e.to_string()))?;
            let (args, env) = process_of(&spec);
            let started = spawn(&args, &env, pid, None)
                .map_err(|e| format!("runc exec failed: unable to start container process: {e}"))?;
            write_pid(call.flag("--pid-file"), started)
        }
        "ps" => {
            let pid = call.pid()?;
            let pids: Vec<i32> = group_members(pid);
            println!("{}", serde_json::to_string(&pids).expect("pids"));
            Ok(())
        }
        "pause" | "resume" => {
            let pid = call.pid()?;
            let dir = call.dir()?;
            let (signal, paused) = if call.command == "pause" {
                (Signal::SIGSTOP, true)
            } else {
                (Signal::SIGCONT, false)
            };
            killpg(Pid::from_raw(pid), signal).map_err(|e| format!("{}: {e}", call.command))?;
            if paused {
                std::fs::write(dir.join("paused"), "").map_err(|e| e.to_string())
            } else {
                let _ = std::fs::remove_file(dir.join("paused"));
                Ok(())
            }
        }
        "update" => call.pid().map(drop),
        "list" => {
            let ids: Vec<serde_json::Value> = std::fs::read_dir(&call.root)
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|e| {
                    e.file_name()
                        .to_str()
                        .map(|id| serde_json::json!({"id": id}))
                })
                .collect();
            println!("{}", serde_json::Value::Array(ids));
            Ok(())
        }
        other => Err(format!("command {other} is not faked")),
    }
}

/// The live processes of process group `group`.
fn group_members(group: i32) -> Vec<i32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let Some((_, rest)) = stat.rsplit_once(") ") else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // After the name: state, ppid, pgrp.
        if fields.first() != Some(&"Z") && fields.get(2) == Some(&group.to_string().as_str()) {
            pids.push(pid);
        }
    }
    pids.sort_unstable();
    pids
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(calls) = std::env::var_os("FAKE_RUNTIME_CALLS") {
        if let Ok(mut file) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(calls)
        {
            let _ = writeln!(file, "{}", args.join(" "));
        }
    }
    let call = match parse(args) {
        Ok(call) => call,
        Err(e) => {
            eprintln!("fake-runtime: {e}");
            std::process::exit(2);
        }
    };
    if let Err(message) = run(&call) {
        if let Some(log) = &call.log {
            if let Ok(mut file) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
            {
                let line = serde_json::json!({"level": "error", "msg": message, "time": "2026-01-01T00:00:00Z"});
                let _ = writeln!(file, "{line}");
            }
        }
        eprintln!("{message}");
        std::process::exit(1);
    }
}
