//! Creating and starting the container: the log, the stdio pipes (or a terminal), then
//! `runtime run --detach`. On any failure everything made so far is undone, so `tether run` leaves
//! nothing behind.
//!
//! `run --detach` rather than `create` + `start`: one runtime process instead of two saves about
//! 10 ms of start-up (31.8 ms against 42.6 ms measured on this machine's kind), and `tether run` has
//! nothing to do between the two steps.

use super::ReaperWait;
use crate::config::DaemonConfig;
use crate::sys::receive_terminal;
use shim_core::StateLayout;
use shim_io::{LogSink, Rotation, SinkOptions};
use shim_reaper::Reaper;
use shim_runc::{CreateOptions, DeleteOptions, ProcessIo, RunOptions, Runc};
use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};

/// A pipe holds this much container output while the daemon is busy elsewhere (the default 64 KiB
/// fills in microseconds at full speed).
const PIPE_SIZE: i32 = 1 << 20;

/// What a successful start hands to the event loop.
pub struct Started {
    pub init_pid: i32,
    /// The container's stdout (its terminal, with `tty`).
    pub stdout: OwnedFd,
    /// Its stderr (none with a terminal: both go to the terminal).
    pub stderr: Option<OwnedFd>,
    /// Where input for the container goes (the stdin pipe, or the terminal), with `stdin` or `tty`.
    pub stdin: Option<File>,
    /// The terminal master, for resizing.
    pub terminal: Option<File>,
    pub sink: LogSink,
}

/// The container's end and our end of its stdio.
struct Stdio {
    io: ProcessIo,
    stdout: Option<OwnedFd>,
    stderr: Option<OwnedFd>,
    stdin: Option<File>,
}

/// Creates and starts the container. The error is one line for the user.
pub fn start_container(
    config: &DaemonConfig,
    layout: &StateLayout,
    runc: &Runc,
    reaper: &mut Reaper,
) -> Result<Started, String> {
    let log_existed = config.log_path.exists();
    let mut options = SinkOptions::new(config.format());
    if let Some(max_size) = config.log_max_size {
        options = options.rotation(Rotation {
            max_size,
            max_files: config.log_max_files,
        });
    }
    let sink = LogSink::open(&config.log_path, options)
        .map_err(|e| format!("log {}: {e}", config.log_path.display()))?;
    match run_container(config, layout, runc, reaper, sink) {
        Ok(started) => Ok(started),
        Err(message) => {
            if !log_existed {
                let _ = std::fs::remove_file(&config.log_path);
            }
            Err(message)
        }
    }
}

fn pipe() -> Result<(OwnedFd, OwnedFd), String> {
    super::nonblocking::pipe().map_err(|e| format!("pipe: {e}"))
}

fn null() -> Result<File, String> {
    File::open("/dev/null").map_err(|e| format!("/dev/null: {e}"))
}

/// Pipes for a container without a terminal: stdout and stderr always, stdin with `-i`.
fn pipes(config: &DaemonConfig) -> Result<Stdio, String> {
    let (stdout_read, stdout_write) = pipe()?;
    let (stderr_read, stderr_write) = pipe()?;
    for fd in [&stdout_read, &stderr_read] {
        let _ = nix::fcntl::fcntl(
            fd.as_raw_fd(),
            nix::fcntl::FcntlArg::F_SETPIPE_SZ(PIPE_SIZE),
        );
    }
    let (container_stdin, our_stdin) = if config.stdin {
        let (read_end, write_end) = pipe()?;
        (File::from(read_end), Some(File::from(write_end)))
    } else {
        (null()?, None)
    };
    // The runtime passes its stdio on to the container's init; our copies of the write ends close
    // when the spawn returns, so only the container holds them and EOF means the container is done.
    Ok(Stdio {
        io: ProcessIo::new(
            container_stdin,
            File::from(stdout_write),
            File::from(stderr_write),
        ),
        stdout: Some(stdout_read),
        stderr: Some(stderr_read),
        stdin: our_stdin,
    })
}

fn run_container(
    config: &DaemonConfig,
    layout: &StateLayout,
    runc: &Runc,
    reaper: &mut Reaper,
    sink: LogSink,
) -> Result<Started, String> {
    let id = config.id.as_str();
    let pid_file = layout.init_pid_file(&config.id);
    let console_path = layout.container_dir(&config.id).join("console.sock");
    let mut create = CreateOptions::new(&config.bundle).pid_file(&pid_file);
    let (stdio, console) = if config.tty {
        let listener = std::os::unix::net::UnixListener::bind(&console_path)
            .map_err(|e| format!("console socket {}: {e}", console_path.display()))?;
        create = create.console_socket(&console_path);
        let stdio = Stdio {
            io: ProcessIo::new(null()?, null()?, null()?),
            stdout: None,
            stderr: None,
            stdin: None,
        };
        (stdio, Some(listener))
    } else {
        (pipes(config)?, None)
    };
    let options = RunOptions {
        create,
        detach: true,
    };
    // Whatever failed, make sure no container of this id is left (runc removes a container whose
    // start failed, but not every runtime does).
    let undo = |reaper: &mut Reaper| {
        let _ = runc.delete(id, DeleteOptions { force: true }, &mut ReaperWait(reaper));
    };
    let ran = runc.run(id, &options, stdio.io, &mut ReaperWait(reaper));
    let _ = std::fs::remove_file(&console_path);
    if let Err(e) = ran {
        undo(reaper);
        // The runtime's stderr is the container's: what it said there is its error too.
        return Err(match stdio.stderr.as_ref().and_then(last_words) {
            Some(said) if e.runtime_message().is_none_or(|m| !m.contains(&said)) => {
                format!("{e}; the runtime said: {said}")
            }
            _ => e.to_string(),
        });
    }
    let init_pid = match read_pid(&pid_file) {
        Ok(pid) => pid,
        Err(message) => {
            undo(reaper);
            return Err(message);
        }
    };
    let (stdout, stdin, terminal) = match console {
        None => (stdio.stdout.expect("pipes made"), stdio.stdin, None),
        Some(listener) => {
            let received = receive_terminal(&listener).and_then(|master| {
                let master = File::from(master);
                let reader = OwnedFd::from(master.try_clone()?);
                let writer = master.try_clone()?;
                Ok((reader, writer, master))
            });
            match received {
                Ok((reader, writer, master)) => (reader, Some(writer), Some(master)),
                Err(e) => {
                    undo(reaper);
                    return Err(format!("terminal from the runtime: {e}"));
                }
            }
        }
    };
    Ok(Started {
        init_pid,
        stdout,
        stderr: stdio.stderr,
        stdin,
        terminal,
        sink,
    })
}

/// The pid a runtime wrote to its `--pid-file`.
pub(crate) fn read_pid(path: &std::path::Path) -> Result<i32, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("runtime pid file {}: {e}", path.display()))?;
    text.trim()
        .parse()
        .map_err(|_| format!("runtime pid file {}: not a pid: {text:?}", path.display()))
}

/// The last line written to a pipe nobody read yet (at most 64 KiB of it).
fn last_words(pipe: &OwnedFd) -> Option<String> {
    use std::io::Read;
    super::nonblocking::set_nonblocking(pipe).ok()?;
    let mut file = File::from(pipe.try_clone().ok()?);
    let mut text = vec![0; 64 * 1024];
    let n = file.read(&mut text).ok()?;
    let text = String::from_utf8_lossy(&text[..n]);
    text.lines()
        .rev()
        .map(str::trim)
        .find(|line| !line.is_empty())
        .map(|line| line.chars().take(500).collect())
}
