//! A process's stdio: tether's own pipes (or a terminal) for the process, and on the other side of
//! the relays what its door asked for: containerd's fifos or files, tether's log, or a control
//! client's frames.

use super::logbinary::{self, is_binary_uri};
use mio::Token;
use shim_core::StdioPaths;
use shim_io::fdio::pipe;
use shim_io::{open_input_fifo, Destination, InputFrom};
use shim_runc::ProcessIo;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

/// A process's pipes hold this much output while the shim is busy elsewhere.
const PIPE_SIZE: i32 = 1 << 20;

/// Where a process's stdio goes: what differs between the doors.
#[derive(Debug, Clone)]
pub enum StdioPlan {
    /// containerd's: fifos, files or a logging binary, by URI.
    Paths(StdioPaths),
    /// tether's log (the init of `tether run`), with stdin kept for attach clients.
    Log { stdin: bool, terminal: bool },
    /// A control client's frames (`tether exec`); no client: detached (no stdio at all).
    Client {
        client: Option<Token>,
        stdin: bool,
        terminal: bool,
    },
    /// The shim's own stdio, handed to the process as it is, nothing relayed (podman's
    /// `passthrough` log driver: the container writes where podman's stdio goes).
    Inherit,
}

impl StdioPlan {
    /// The URIs, as containerd's State shows them (none but the terminal flag for tether's own).
    pub fn paths(&self) -> StdioPaths {
        match self {
            StdioPlan::Paths(paths) => paths.clone(),
            StdioPlan::Log { terminal, .. } | StdioPlan::Client { terminal, .. } => StdioPaths {
                terminal: *terminal,
                ..StdioPaths::default()
            },
            StdioPlan::Inherit => StdioPaths::default(),
        }
    }

    pub fn terminal(&self) -> bool {
        match self {
            StdioPlan::Paths(paths) => paths.terminal,
            StdioPlan::Log { terminal, .. } | StdioPlan::Client { terminal, .. } => *terminal,
            StdioPlan::Inherit => false,
        }
    }
}

/// An output to relay: tether's read end and where it goes.
pub type Output = (OwnedFd, Destination);
/// An input to relay: where it comes from and tether's write end of the process's stdin.
pub type Input = (InputFrom, File);

/// Stdio made ready before the runtime is called.
#[derive(Debug)]
pub struct Prepared {
    /// What the runtime hands to the process (everything /dev/null with a terminal).
    pub runtime: ProcessIo,
    /// Where the runtime sends the terminal, with `terminal`.
    pub console: Option<(UnixListener, PathBuf)>,
    pub outputs: Vec<Output>,
    pub input: Option<Input>,
    /// Where a terminal's output and input go, connected once the terminal arrives.
    pub terminal_output: Option<Destination>,
    pub terminal_input: Option<InputFrom>,
}

impl Prepared {
    /// What the runtime command is to be given, leaving nothing of it here (the ends the process
    /// keeps must close in the shim once the runtime has them).
    pub fn take_runtime_io(&mut self) -> ProcessIo {
        let null = std::process::Stdio::null;
        std::mem::replace(&mut self.runtime, ProcessIo::new(null(), null(), null()))
    }
}

fn null_for(write: bool) -> io::Result<File> {
    std::fs::OpenOptions::new()
        .read(!write)
        .write(write)
        .open("/dev/null")
}

fn chown_for_io(fd: &impl AsRawFd, owner: Option<(u32, u32)>) -> io::Result<()> {
    if let Some((uid, gid)) = owner {
        nix::unistd::fchown(
            fd.as_raw_fd(),
            Some(nix::unistd::Uid::from_raw(uid)),
            Some(nix::unistd::Gid::from_raw(gid)),
        )?;
    }
    Ok(())
}

fn open_destination(uri: &str, stream: &str) -> io::Result<Destination> {
    Destination::open(uri).map_err(|e| io::Error::new(e.kind(), format!("{stream} {uri}: {e}")))
}

/// The process the stdio is for, as a logging binary is told.
#[derive(Debug, Clone, Copy)]
pub struct Owner<'a> {
    pub container_id: &'a str,
    pub namespace: &'a str,
    /// The runtime options' IoUid and IoGid: the process's pipe ends are given to them.
    pub io_ids: Option<(u32, u32)>,
    /// A `file://` log named by both stdout and stderr is written into the copier's log
    /// (which rotates it), not by relays.
    pub file_log_rotated: bool,
}

/// The file both stdout and stderr name with `file://`, if they do (stderr may name nothing).
pub fn shared_file_log(paths: &StdioPaths) -> Option<&str> {
    let path = paths.stdout.strip_prefix("file://")?;
    (paths.stderr.is_empty() || paths.stderr == paths.stdout).then_some(path)
}

/// Where stdout and stderr go: a logging binary (one for both, when both name it), or what each
/// names.
fn destinations(paths: &StdioPaths, owner: Owner<'_>) -> io::Result<(Destination, Destination)> {
    if owner.file_log_rotated && shared_file_log(paths).is_some() {
        let stderr = if paths.stderr.is_empty() {
            Destination::Discard
        } else {
            Destination::Log
        };
        return Ok((Destination::Log, stderr));
    }
    if is_binary_uri(&paths.stdout) {
        let (stdout, stderr) =
            logbinary::spawn(&paths.stdout, owner.container_id, owner.namespace)?;
        let stderr = if paths.stderr == paths.stdout {
            Destination::Pipe(stderr)
        } else {
            open_destination(&paths.stderr, "stderr")?
        };
        return Ok((Destination::Pipe(stdout), stderr));
    }
    Ok((
        open_destination(&paths.stdout, "stdout")?,
        open_destination(&paths.stderr, "stderr")?,
    ))
}

/// Opens the client's side and makes the process's side; `console` is where a terminal's socket
/// goes.
pub fn prepare(plan: &StdioPlan, console: &Path, owner: Owner<'_>) -> io::Result<Prepared> {
    match plan {
        StdioPlan::Paths(paths) => prepare_paths(paths, console, owner),
        StdioPlan::Inherit => {
            use std::os::fd::AsFd;
            let own = |fd: std::os::fd::BorrowedFd<'_>| fd.try_clone_to_owned();
            let runtime = ProcessIo::new(
                own(io::stdin().as_fd())?,
                own(io::stdout().as_fd())?,
                own(io::stderr().as_fd())?,
            );
            Ok(Prepared {
                runtime,
                console: None,
                outputs: Vec::new(),
                input: None,
                terminal_output: None,
                terminal_input: None,
            })
        }
        StdioPlan::Log { stdin, terminal } => {
            let input = stdin.then_some(InputFrom::Client);
            let outputs = [Some(Destination::Log), Some(Destination::Log)];
            connect(outputs, input, *terminal, console, None)
        }
        StdioPlan::Client {
            client,
            stdin,
            terminal,
        } => {
            // Detached: the process's stdio is /dev/null.
            let detached = client.is_none() && !terminal;
            // A terminal takes input from an attached client; a pipe only when asked for.
            let input = (client.is_some() && (*stdin || *terminal)).then_some(InputFrom::Client);
            let to =
                || (!detached).then(|| client.map_or(Destination::Discard, Destination::Client));
            connect([to(), to()], input, *terminal, console, None)
        }
    }
}

/// A console socket for the runtime to send the terminal to.
fn console_listener(console: &Path) -> io::Result<(UnixListener, PathBuf)> {
    let _ = std::fs::remove_file(console);
    let listener = UnixListener::bind(console).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("console socket {}: {e}", console.display()),
        )
    })?;
    Ok((listener, console.to_owned()))
}

/// The process's pipes (or its terminal) for where its `outputs` (stdout, stderr) and `input` go;
/// an output that goes nowhere, and an input from nowhere, are /dev/null. `io_ids` own the
/// process's ends.
fn connect(
    outputs: [Option<Destination>; 2],
    input: Option<InputFrom>,
    terminal: bool,
    console: &Path,
    io_ids: Option<(u32, u32)>,
) -> io::Result<Prepared> {
    if terminal {
        let [stdout, _] = outputs;
        return Ok(Prepared {
            runtime: ProcessIo::new(null_for(false)?, null_for(true)?, null_for(true)?),
            console: Some(console_listener(console)?),
            outputs: Vec::new(),
            input: None,
            terminal_output: stdout,
            terminal_input: input,
        });
    }
    let mut relayed = Vec::new();
    let mut process_side = Vec::new();
    for to in outputs {
        let Some(to) = to else {
            process_side.push(null_for(true)?);
            continue;
        };
        let (read_end, write_end) = output_pipe()?;
        chown_for_io(&write_end, io_ids)?;
        relayed.push((read_end, to));
        process_side.push(File::from(write_end));
    }
    let (stdin, input) = match input {
        Some(from) => {
            let (read_end, write_end) = pipe()?;
            chown_for_io(&read_end, io_ids)?;
            (File::from(read_end), Some((from, File::from(write_end))))
        }
        None => (null_for(false)?, None),
    };
    let stderr = process_side.pop().expect("two outputs");
    let stdout = process_side.pop().expect("two outputs");
    Ok(Prepared {
        runtime: ProcessIo::new(stdin, stdout, stderr),
        console: None,
        outputs: relayed,
        input,
        terminal_output: None,
        terminal_input: None,
    })
}

/// A pipe for a process's output, large enough to hold a burst while the shim is busy elsewhere.
fn output_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let (read_end, write_end) = pipe()?;
    let _ = nix::fcntl::fcntl(
        read_end.as_raw_fd(),
        nix::fcntl::FcntlArg::F_SETPIPE_SZ(PIPE_SIZE),
    );
    Ok((read_end, write_end))
}

/// containerd's stdio: the URIs' fifos, files or logging binary.
fn prepare_paths(paths: &StdioPaths, console: &Path, owner: Owner<'_>) -> io::Result<Prepared> {
    let (stdout, stderr) = destinations(paths, owner)?;
    let input = if paths.stdin.is_empty() {
        None
    } else {
        let fifo = open_input_fifo(&paths.stdin)
            .map_err(|e| io::Error::new(e.kind(), format!("stdin {}: {e}", paths.stdin)))?;
        Some(InputFrom::Fifo(fifo))
    };
    // A terminal's output goes to stdout's destination, whatever it is.
    let named = |uri: &str, to| (paths.terminal || !uri.is_empty()).then_some(to);
    let outputs = [named(&paths.stdout, stdout), named(&paths.stderr, stderr)];
    connect(outputs, input, paths.terminal, console, owner.io_ids)
}
