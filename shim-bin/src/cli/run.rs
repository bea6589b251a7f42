//! `tether run`: validate everything, reserve the id, make the bundle (with `--rootfs`), start the
//! daemon and relay its start report; then, in the foreground, show the container's output until
//! it exits and exit with its code (`-d`: print the pid and return).

use crate::cli::args::RunArgs;
use crate::cli::error::{Error, Result};
use crate::common::config::{DaemonConfig, StartReport};
use shim_core::{ContainerId, StateLayout};
use std::io::{BufRead, BufReader};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Runs `tether run`; returns the exit code.
pub fn run(state_dir: &Path, args: RunArgs) -> Result<u8> {
    let (config, spec) = validate(state_dir, &args)?;
    let layout = StateLayout::new(&config.state_dir);
    if args.replace && layout.is_container(&config.id) {
        crate::cli::commands::remove(&layout, &config.id, true)
            .map_err(|e| Error::failed(format!("--replace: {e}")))?;
    }
    reserve(&layout, &config.id)?;
    if let Some(spec) = spec {
        let made = std::fs::create_dir_all(&config.bundle)
            .map_err(|e| e.to_string())
            .and_then(|()| {
                spec.save(config.bundle.join("config.json"))
                    .map_err(|e| e.to_string())
            });
        if let Err(e) = made {
            let _ = crate::shim::mounts::remove_container_dir(&layout.container_dir(&config.id));
            return Err(Error::failed(format!(
                "container {}: write its bundle {}: {e}",
                config.id,
                config.bundle.display()
            )));
        }
    }
    match start_daemon(&config) {
        Ok(pid) => {
            if let Some(pid_file) = &args.pid_file {
                if let Err(e) = std::fs::write(pid_file, format!("{pid}\n")) {
                    // Said to have failed, so it must not be left running.
                    let _ = crate::cli::client::request(
                        &layout,
                        &config.id,
                        &shim_core::protocol::Request::Delete { force: true },
                        Some(crate::cli::client::REQUEST_TIMEOUT),
                    );
                    return Err(Error::failed(format!(
                        "container {}: write its pid to {}: {e}; the container was removed",
                        config.id,
                        pid_file.display()
                    )));
                }
            }
            if args.detach {
                // The id, as docker prints it: what every other command takes (`--pid-file` has
                // the pid).
                println!("{}", config.id);
                return Ok(0);
            }
            crate::cli::foreground::run(&layout, &config.id, args.tty || args.interactive, args.rm)
        }
        Err(error) => {
            // The daemon cleans up after itself; this covers a daemon that died before it could.
            let _ = crate::shim::mounts::remove_container_dir(&layout.container_dir(&config.id));
            Err(error)
        }
    }
}

/// The daemon's configuration, and the spec to write first with `--rootfs`.
fn validate(
    state_dir: &Path,
    args: &RunArgs,
) -> Result<(DaemonConfig, Option<oci_spec::runtime::Spec>)> {
    let id: ContainerId = match args.id_flag.as_deref().or(args.name.as_deref()) {
        Some(text) => text.parse().map_err(|e| Error::invalid(format!("{e}")))?,
        None => generated_id()?,
    };
    let state_dir = absolute(state_dir)?;
    if args.tty && args.interactive && !args.detach {
        crate::cli::terminal::stdin_is_a_terminal()?;
    }
    let bundle = match (&args.bundle, &args.rootfs) {
        (Some(bundle), _) => {
            if !args.command.is_empty() {
                return Err(Error::invalid(
                    "a command after -- goes with --rootfs; with --bundle, its config.json says what runs",
                ));
            }
            if let Some(flag) = args.spec.first_given() {
                return Err(Error::invalid(format!(
                    "{flag} goes with --rootfs; with --bundle, set it in the bundle's config.json"
                )));
            }
            absolute(bundle)?
        }
        (None, Some(rootfs)) => {
            let (rootfs, overlay) = overlay_suffix(rootfs);
            let rootfs = absolute(&rootfs)?;
            if !rootfs.is_dir() {
                return Err(Error::invalid(format!(
                    "rootfs {}: no such directory",
                    rootfs.display()
                )));
            }
            let bundle = StateLayout::new(&state_dir)
                .container_dir(&id)
                .join("bundle");
            let root = if overlay {
                check_overlay_lower(&rootfs)?;
                bundle.join("rootfs")
            } else {
                rootfs.clone()
            };
            let spec = crate::cli::spec::for_rootfs(
                args,
                &args.spec,
                &rootfs,
                &root,
                id.as_str(),
                &state_dir,
            )?;
            let network = match crate::cli::spec::network_mode(&args.spec)? {
                crate::cli::args::NetworkArg::Bridge => {
                    crate::shim::network::plugin_dir(&args.spec.publish).map_err(Error::invalid)?;
                    let layout = StateLayout::new(&state_dir);
                    let others: Vec<_> = layout
                        .list()
                        .unwrap_or_default()
                        .into_iter()
                        .filter(|other| *other != id)
                        .map(|other| {
                            let record = layout
                                .container_dir(&other)
                                .join(crate::shim::network::RECORD);
                            (other.to_string(), record)
                        })
                        .collect();
                    crate::shim::network::check_ports_free(&args.spec.publish, &others)
                        .map_err(Error::invalid)?;
                    let cgroup = crate::cli::spec::cgroup_path(&state_dir, id.as_str());
                    Some(crate::shim::network::Request {
                        // Unique to the state dir and id, as its cgroup is.
                        cni_id: cgroup
                            .file_name()
                            .unwrap_or_default()
                            .to_string_lossy()
                            .into(),
                        publish: args.spec.publish.clone(),
                        record: StateLayout::new(&state_dir)
                            .container_dir(&id)
                            .join(crate::shim::network::RECORD),
                    })
                }
                _ => None,
            };
            let config = daemon_config(args, id, bundle, state_dir)?;
            return Ok((
                DaemonConfig {
                    overlay_lower: overlay.then_some(rootfs),
                    network,
                    ..config
                },
                Some(spec),
            ));
        }
        (None, None) => return Err(Error::invalid("give --rootfs DIR or --bundle DIR")),
    };
    if !bundle.is_dir() {
        return Err(Error::invalid(format!(
            "bundle {}: no such directory",
            bundle.display()
        )));
    }
    let config_path = bundle.join("config.json");
    if !config_path.is_file() {
        return Err(Error::invalid(format!(
            "bundle {}: no config.json",
            bundle.display()
        )));
    }
    let spec = oci_spec::runtime::Spec::load(&config_path)
        .map_err(|e| Error::invalid(format!("bundle {}: config.json: {e}", bundle.display())))?;
    let terminal = spec
        .process()
        .as_ref()
        .and_then(|p| p.terminal())
        .unwrap_or(false);
    if terminal != args.tty {
        return Err(Error::invalid(format!(
            "bundle {}: config.json has process.terminal {terminal}, so run {} -t",
            bundle.display(),
            if terminal { "with" } else { "without" }
        )));
    }
    Ok((daemon_config(args, id, bundle, state_dir)?, None))
}

/// `--rootfs DIR:O` (podman's spelling): the directory, and whether an overlay goes on it.
fn overlay_suffix(rootfs: &Path) -> (PathBuf, bool) {
    use std::os::unix::ffi::OsStrExt;
    let bytes = rootfs.as_os_str().as_bytes();
    match bytes.strip_suffix(b":O") {
        Some(dir) if !dir.is_empty() => (PathBuf::from(std::ffi::OsStr::from_bytes(dir)), true),
        _ => (rootfs.to_owned(), false),
    }
}

/// overlayfs takes its lower directory in its mount options, which ',' and ':' separate.
fn check_overlay_lower(dir: &Path) -> Result<()> {
    let text = dir.to_string_lossy();
    if text.contains([',', ':']) || text.len() > 1024 {
        return Err(Error::invalid(format!(
            "--rootfs {text}:O: an overlay's directory has no ',' or ':' in its path (and at most 1024 bytes)"
        )));
    }
    Ok(())
}

fn daemon_config(
    args: &RunArgs,
    id: ContainerId,
    bundle: PathBuf,
    state_dir: PathBuf,
) -> Result<DaemonConfig> {
    let runtime = find_runtime(&args.runtime)?;
    let log_path = match &args.log {
        Some(log) => {
            let log = absolute(log)?;
            check_parent("log", &log)?;
            // A fifo with no reader would block the daemon in open(2); a device or a directory is
            // no log either.
            if let Ok(meta) = std::fs::metadata(&log) {
                if !shim_io::is_log_file(&meta) {
                    return Err(Error::invalid(format!(
                        "log {}: not a regular file or a device",
                        log.display()
                    )));
                }
            }
            log
        }
        None => StateLayout::new(&state_dir).default_log(&id),
    };
    if let Some(pid_file) = &args.pid_file {
        check_parent("pid file", &absolute(pid_file)?)?;
    }
    Ok(DaemonConfig {
        id,
        bundle,
        state_dir,
        log_path,
        log_format: args.log_format.as_str().to_owned(),
        log_max_size: args.log_max_size,
        log_max_files: args.log_max_files,
        runtime,
        runtime_root: args.runtime_root.as_deref().map(absolute).transpose()?,
        stdin: args.interactive,
        tty: args.tty,
        // The daemon removes it at its exit when the client may leave first: detached, or
        // attached (-i, -t), whose client may detach and leave it to run and still be removed,
        // as docker does. A client that follows the log removes it itself once it has the code.
        remove_on_exit: args.rm && (args.detach || args.tty || args.interactive),
        replay_to_first_attach: !args.detach && (args.tty || args.interactive),
        notify_socket: notify_socket()?,
        runtime_timeout_secs: args.runtime_timeout,
        overlay_lower: None,
        network: None,
    })
}

/// systemd's `$NOTIFY_SOCKET` (a path, or `@` and an abstract name), when set.
fn notify_socket() -> Result<Option<PathBuf>> {
    let Some(socket) = std::env::var_os("NOTIFY_SOCKET").filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    let text = socket.to_string_lossy();
    // 108 bytes hold a socket address's path, its NUL included.
    if !(text.starts_with('/') || text.starts_with('@')) || socket.len() > 107 {
        return Err(Error::invalid(format!(
            "NOTIFY_SOCKET {text:?} is not a socket path (absolute, or @name, at most 107 bytes)"
        )));
    }
    Ok(Some(PathBuf::from(socket)))
}

/// `path`'s directory must exist before anything is made.
fn check_parent(what: &str, path: &Path) -> Result<()> {
    let parent = path.parent().unwrap_or(Path::new("/"));
    if parent.is_dir() {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "{what} {}: directory {} does not exist",
            path.display(),
            parent.display()
        )))
    }
}

fn absolute(path: &Path) -> Result<PathBuf> {
    std::path::absolute(path).map_err(|e| Error::invalid(format!("{}: {e}", path.display())))
}

/// The runtime as given (a path) or found on PATH.
fn find_runtime(runtime: &Path) -> Result<PathBuf> {
    let found = if runtime.components().count() > 1 || runtime.is_absolute() {
        runtime.is_file().then(|| runtime.to_owned())
    } else {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(runtime))
                .find(|candidate| candidate.is_file())
        })
    };
    let found = found.ok_or_else(|| {
        Error::invalid(format!(
            "runtime {} not found (looked for it {})",
            runtime.display(),
            if runtime.components().count() > 1 {
                "at that path"
            } else {
                "in PATH"
            }
        ))
    })?;
    absolute(&found)
}

/// Creates `<state-dir>/<id>` (0700); its existence is what "the id is in use" means. The
/// reserving process writes its pid there (`run.pid`), so a reservation whose `tether run` was
/// killed before a daemon took over is known stale and taken over.
fn reserve(layout: &StateLayout, id: &ContainerId) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o711)
        .create(layout.root())
        .map_err(|e| Error::failed(format!("state dir {}: {e}", layout.root().display())))?;
    crate::cli::client::trusted_root(layout)?;
    let dir = layout.container_dir(id);
    let mut made = std::fs::DirBuilder::new().mode(0o700).create(&dir);
    if matches!(&made, Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists) {
        match stale_reservation(layout, id) {
            Some(Stale::Reserved) => {
                let _ = crate::shim::mounts::remove_container_dir(&dir);
            }
            Some(Stale::Empty) => {
                let _ = std::fs::remove_dir(&dir);
            }
            None => {}
        }
        made = std::fs::DirBuilder::new().mode(0o700).create(&dir);
    }
    match made {
        Ok(()) => {
            let _ = std::fs::write(dir.join(RESERVED_BY), format!("{}\n", std::process::id()));
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && is_tethers(layout, id) => {
            Err(Error::invalid(format!(
                "container {id} already exists (`tether rm -f {id}` removes it; `tether run --replace` replaces it)"
            )))
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(Error::invalid(format!(
            "{} exists and is not a container of tether's: choose another id",
            layout.container_dir(id).display()
        ))),
        Err(e) => Err(Error::failed(format!(
            "state dir {}: {e}",
            layout.container_dir(id).display()
        ))),
    }
}

/// Whether `<state-dir>/<id>` is tether's: a container, or one being made (a `tether run`'s
/// reservation, a daemon starting).
fn is_tethers(layout: &StateLayout, id: &ContainerId) -> bool {
    layout.is_container(id)
        || layout.container_dir(id).join(RESERVED_BY).is_file()
        || layout.daemon_pid_file(id).is_file()
}

/// In a container's directory: the pid of the `tether run` that reserved it.
const RESERVED_BY: &str = "run.pid";

/// An id for a container run without one: 12 random hex digits, as docker's short ids.
fn generated_id() -> Result<ContainerId> {
    use std::io::Read;
    let mut bytes = [0u8; 6];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut random| random.read_exact(&mut bytes))
        .map_err(|e| Error::failed(format!("make an id: /dev/urandom: {e}")))?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    hex.parse()
        .map_err(|e| Error::failed(format!("make an id: {e}")))
}

/// A reservation that can be taken over.
enum Stale {
    /// Its `tether run` is gone and no daemon took it over: removed whole.
    Reserved,
    /// Empty and over 10 s old (a `tether run` killed before it wrote `run.pid`): removed only
    /// while empty.
    Empty,
}

/// Whether `<state-dir>/<id>` is a reservation of a `tether run` that is gone. Anything else
/// there (a container, another program's directory) is never taken over or removed.
fn stale_reservation(layout: &StateLayout, id: &ContainerId) -> Option<Stale> {
    let dir = layout.container_dir(id);
    if layout.daemon_pid_file(id).exists() || layout.state_file(id).exists() {
        return None;
    }
    if crate::cli::client::trusted_entry(layout, id).is_err() {
        return None;
    }
    match std::fs::read_to_string(dir.join(RESERVED_BY)) {
        Ok(text) => {
            let pid = text.trim().parse::<i32>().ok()?;
            (!std::path::Path::new(&format!("/proc/{pid}")).exists()).then_some(Stale::Reserved)
        }
        Err(_) => {
            let empty = std::fs::read_dir(&dir).is_ok_and(|mut entries| entries.next().is_none());
            let old = std::fs::metadata(&dir)
                .and_then(|m| m.modified())
                .is_ok_and(|at| at.elapsed().is_ok_and(|age| age.as_secs() > 10));
            (empty && old).then_some(Stale::Empty)
        }
    }
}

/// Starts `tether daemon` detached (it calls setsid itself), with its stdout on a pipe that carries
/// the one-line start report, and returns the container's pid.
fn start_daemon(config: &DaemonConfig) -> Result<i32> {
    let exe = std::env::current_exe()
        .map_err(|e| Error::failed(format!("find the tether binary: {e}")))?;
    let json = serde_json::to_string(config).expect("config serializes");
    let mut child = Command::new(exe)
        .arg("daemon")
        .arg("--config")
        .arg(json)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        // The daemon tells systemd itself (DaemonConfig::notify_socket); runc, seeing it, would
        // hand the socket to the container and wait for the container's own READY.
        .env_remove("NOTIFY_SOCKET")
        .spawn()
        .map_err(|e| Error::failed(format!("start the shim daemon: {e}")))?;
    let stdout = child.stdout.take().expect("piped");
    // The daemon reports within its runtime timeout (plus the undoing after it); past that it is
    // stuck, and is killed: `tether run` is bounded.
    let limit = std::time::Duration::from_secs(config.runtime_timeout_secs.saturating_mul(2) + 10);
    let mut line = String::new();
    let read = read_report(stdout, &mut line, limit);
    if read
        .as_ref()
        .is_err_and(|e| e.kind() == std::io::ErrorKind::TimedOut)
    {
        let _ = child.kill();
        let _ = child.wait();
        return Err(Error::failed(format!(
            "container {}: the shim daemon did not report within {}s and was killed",
            config.id,
            limit.as_secs()
        )));
    }
    let report: Option<StartReport> = serde_json::from_str(line.trim()).ok();
    match (read, report) {
        (Ok(_), Some(StartReport::Started { pid })) => Ok(pid),
        (_, Some(StartReport::Failed { message, code })) => {
            // The daemon exits right after a failed start; collect it.
            let _ = child.wait();
            let message = format!("container {}: {message}", config.id);
            let code = code
                .and_then(|code| u8::try_from(code).ok())
                .filter(|&code| code != 0);
            Err(match code {
                Some(code) => Error::with_code(message, code),
                None => Error::failed(message),
            })
        }
        _ => {
            let status = child.wait().map(|s| s.to_string()).unwrap_or_default();
            let shim_log = StateLayout::new(&config.state_dir).shim_log(&config.id);
            let last = std::fs::read_to_string(shim_log)
                .ok()
                .and_then(|text| {
                    text.lines()
                        .rev()
                        .find(|l| !l.trim().is_empty())
                        .map(str::to_owned)
                })
                .unwrap_or_else(|| "no diagnostics".to_owned());
            Err(Error::failed(format!(
                "container {}: the shim daemon exited during start-up ({status}): {last}",
                config.id
            )))
        }
    }
}

/// Reads the daemon's one-line start report, waiting at most `limit`.
fn read_report(
    stdout: std::process::ChildStdout,
    line: &mut String,
    limit: std::time::Duration,
) -> std::io::Result<usize> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
    let deadline = std::time::Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(std::io::ErrorKind::TimedOut.into());
        }
        let mut fds = [PollFd::new(stdout.as_fd(), PollFlags::POLLIN)];
        match poll(
            &mut fds,
            PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX),
        ) {
            Ok(0) => continue,
            Ok(_) => break,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    // The report is one short line written at once.
    BufReader::new(stdout).read_line(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_overlay_suffix_is_podmans_capital_o() {
        assert_eq!(
            overlay_suffix(Path::new("/r:O")),
            (PathBuf::from("/r"), true)
        );
        assert_eq!(
            overlay_suffix(Path::new("/r")),
            (PathBuf::from("/r"), false)
        );
        assert_eq!(
            overlay_suffix(Path::new("/r:o")),
            (PathBuf::from("/r:o"), false)
        );
        assert_eq!(
            overlay_suffix(Path::new(":O")),
            (PathBuf::from(":O"), false)
        );
        assert!(check_overlay_lower(Path::new("/srv/a,b")).is_err());
        assert!(check_overlay_lower(Path::new("/srv/a:b")).is_err());
        assert!(check_overlay_lower(Path::new("/srv/ab")).is_ok());
    }
}
