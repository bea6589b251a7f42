//! A process's stdio as containerd asked for it: tether's own pipes (or a terminal) for the process,
//! and the client's fifos or files on the other side of the relays.

use super::logbinary::{self, is_binary_uri};
use crate::daemon::nonblocking::pipe;
use shim_core::StdioPaths;
use shim_io::relay::{open_input_fifo, Destination};
use shim_runc::ProcessIo;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

/// A process's pipes hold this much output while the shim is busy elsewhere.
const PIPE_SIZE: i32 = 1 << 20;

/// An output to relay: tether's read end and where it goes.
pub type Output = (OwnedFd, Option<Destination>);
/// An input to relay: the client's fifo and tether's write end of the process's stdin.
pub type Input = (File, File);

/// Stdio made ready before the runtime is called.
#[derive(Debug)]
pub struct Prepared {
    /// What the runtime hands to the process (everything /dev/null with a terminal).
    pub runtime: ProcessIo,
    /// Where the runtime sends the terminal, with `terminal`.
    pub console: Option<(UnixListener, PathBuf)>,
    pub outputs: Vec<Output>,
    pub input: Option<Input>,
    /// The client's fifos for a terminal, connected once the terminal arrives.
    pub terminal_stdout: Option<Destination>,
    pub terminal_stdin: Option<File>,
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

fn open_destination(uri: &str, stream: &str) -> io::Result<Option<Destination>> {
    Destination::open(uri).map_err(|e| io::Error::new(e.kind(), format!("{stream} {uri}: {e}")))
}

/// The process the stdio is for, as a logging binary is told.
#[derive(Debug, Clone, Copy)]
pub struct Owner<'a> {
    pub container_id: &'a str,
    pub namespace: &'a str,
    /// The runtime options' IoUid and IoGid: the process's pipe ends are given to them.
    pub io_ids: Option<(u32, u32)>,
}

/// Where stdout and stderr go: a logging binary (one for both, when both name it), or what each
/// names.
fn destinations(
    paths: &StdioPaths,
    owner: Owner<'_>,
) -> io::Result<(Option<Destination>, Option<Destination>)> {
    if is_binary_uri(&paths.stdout) {
        let (stdout, stderr) =
            logbinary::spawn(&paths.stdout, owner.container_id, owner.namespace)?;
        let stderr = if paths.stderr == paths.stdout {
            Some(Destination::Pipe(stderr))
        } else {
            open_destination(&paths.stderr, "stderr")?
        };
        return Ok((Some(Destination::Pipe(stdout)), stderr));
    }
    Ok((
        open_destination(&paths.stdout, "stdout")?,
        open_destination(&paths.stderr, "stderr")?,
    ))
}

/// Opens the client's side and makes the process's side; `console` is where a terminal's socket
/// goes.
pub fn prepare(paths: &StdioPaths, console: &Path, owner: Owner<'_>) -> io::Result<Prepared> {
    let (stdout_destination, stderr_destination) = destinations(paths, owner)?;
    if paths.terminal {
        let terminal_stdout = stdout_destination;
        let terminal_stdin = if paths.stdin.is_empty() {
            None
        } else {
            Some(
                open_input_fifo(&paths.stdin)
                    .map_err(|e| io::Error::new(e.kind(), format!("stdin {}: {e}", paths.stdin)))?,
            )
        };
        let _ = std::fs::remove_file(console);
        let listener = UnixListener::bind(console).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("console socket {}: {e}", console.display()),
            )
        })?;
        return Ok(Prepared {
            runtime: ProcessIo::new(null_for(false)?, null_for(true)?, null_for(true)?),
            console: Some((listener, console.to_owned())),
            outputs: Vec::new(),
            input: None,
            terminal_stdout,
            terminal_stdin,
        });
    }
    let mut outputs = Vec::new();
    let mut process_side = Vec::new();
    for (uri, destination) in [
        (&paths.stdout, stdout_destination),
        (&paths.stderr, stderr_destination),
    ] {
        if uri.is_empty() {
            process_side.push(null_for(true)?);
            continue;
        }
        let (read_end, write_end) = pipe()?;
        let _ = nix::fcntl::fcntl(
            read_end.as_raw_fd(),
            nix::fcntl::FcntlArg::F_SETPIPE_SZ(PIPE_SIZE),
        );
        chown_for_io(&write_end, owner.io_ids)?;
        outputs.push((read_end, destination));
        process_side.push(File::from(write_end));
    }
    let (stdin, input) = if paths.stdin.is_empty() {
        (null_for(false)?, None)
    } else {
        let fifo = open_input_fifo(&paths.stdin)
            .map_err(|e| io::Error::new(e.kind(), format!("stdin {}: {e}", paths.stdin)))?;
        let (read_end, write_end) = pipe()?;
        chown_for_io(&read_end, owner.io_ids)?;
        (File::from(read_end), Some((fifo, File::from(write_end))))
    };
    let stderr = process_side.pop().expect("two outputs");
    let stdout = process_side.pop().expect("two outputs");
    Ok(Prepared {
        runtime: ProcessIo::new(stdin, stdout, stderr),
        console: None,
        outputs,
        input,
        terminal_stdout: None,
        terminal_stdin: None,
    })
}
