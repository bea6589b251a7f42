//! `tether exec` and `tether attach`: ask the daemon, then relay frames — the process's output to our
//! stdout and stderr, our stdin (and terminal size) to it — until the exit frame.

use crate::cli::args::ExecArgs;
use crate::cli::client::connect;
use crate::cli::detach::{DetachKeys, Typed};
use crate::cli::error::{Error, Result};
use crate::cli::terminal::{window_size, RawMode};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use shim_core::frame::{self, FrameKind};
use shim_core::protocol::{ExecRequest, Reply, Request, Response};
use shim_core::StateLayout;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;

/// The exit code `tether exec` uses when `--timeout` killed the command (as timeout(1) does).
pub const TIMED_OUT: u8 = 124;

/// Runs `tether exec`; returns the exit code.
pub fn exec(layout: &StateLayout, args: ExecArgs) -> Result<u8> {
    if args.tty && args.interactive && !args.detach {
        crate::cli::terminal::stdin_is_a_terminal()?;
    }
    let id = crate::cli::client::resolve_id(layout, &args.id)?;
    let request = ExecRequest {
        args: args.command,
        env: crate::cli::spec::environment(&args.env, &args.env_files)?,
        user: args.user,
        cwd: args.workdir,
        tty: args.tty,
        stdin: args.interactive,
        detach: args.detach,
        timeout_secs: args.timeout,
        window: if args.tty { window_size() } else { None },
    };
    let timeout = request.timeout_secs;
    let (stream, answer, leftover) = open(layout, &id, &Request::Exec(request))?;
    let exec_id = match answer {
        Ok(Response::Ok(Reply::Exec { exec_id, .. })) => exec_id,
        Ok(Response::Error(body)) => {
            return match body.exit_code {
                Some(code) => {
                    eprintln!("tether: {}", body.message.replace('\n', " "));
                    Ok(code.clamp(0, 255) as u8)
                }
                None => Err(Error::failed(body.message)),
            };
        }
        _ => {
            return Err(Error::failed(format!(
                "container {id}: unexpected answer to exec"
            )))
        }
    };
    if args.detach {
        println!("{exec_id}");
        return Ok(0);
    }
    let _raw = if args.tty && args.interactive {
        RawMode::stdin()
    } else {
        None
    };
    let keys = (args.tty && args.interactive).then(|| args.detach_keys.clone());
    let outcome = relay(stream, leftover, args.interactive, args.tty, keys)?;
    drop(_raw);
    match outcome {
        Outcome::Detached => {
            eprintln!("tether: detached from {exec_id}; it keeps running");
            Ok(0)
        }
        Outcome::Exited {
            code,
            timed_out: true,
        } => {
            eprintln!(
                "tether: exec {exec_id} timed out after {}s and was killed (status {code})",
                timeout.unwrap_or_default()
            );
            Ok(TIMED_OUT)
        }
        Outcome::Exited { code, .. } => Ok(code.clamp(0, 255) as u8),
        Outcome::OutputClosed => Ok(OUTPUT_CLOSED),
        Outcome::Lost => Err(Error::failed(format!(
            "container {id}: the shim daemon closed {exec_id}'s stream before it ended"
        ))),
    }
}

/// How an attach ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attached {
    /// The container exited with this code.
    Exited(u8),
    /// The client detached (the detach keys); the container runs on.
    Detached,
    /// The client's output was closed (`| head`); the container runs on.
    OutputClosed,
}

/// Runs `tether attach` until the container exits or the client detaches.
pub fn attach(
    layout: &StateLayout,
    id: &str,
    no_stdin: bool,
    detach_keys: &DetachKeys,
) -> Result<Attached> {
    let id = crate::cli::client::resolve_id(layout, id)?;
    let (mut stream, answer, leftover) = open(layout, &id, &Request::Attach)?;
    let (tty, has_stdin) = match answer {
        Ok(Response::Ok(Reply::Attach { tty, stdin })) => (tty, stdin),
        Ok(Response::Error(body)) => return Err(Error::failed(body.message)),
        _ => {
            return Err(Error::failed(format!(
                "container {id}: unexpected answer to attach"
            )))
        }
    };
    let forward_stdin = has_stdin && !no_stdin;
    if tty {
        send_window_size(&mut stream);
    }
    let _raw = if tty && forward_stdin {
        RawMode::stdin()
    } else {
        None
    };
    let keys = (tty && forward_stdin).then(|| detach_keys.clone());
    let outcome = relay(stream, leftover, forward_stdin, tty, keys)?;
    drop(_raw);
    match outcome {
        Outcome::Detached => {
            eprintln!("tether: detached from {id}; it keeps running");
            Ok(Attached::Detached)
        }
        Outcome::Exited { code, .. } => Ok(Attached::Exited(code.clamp(0, 255) as u8)),
        Outcome::OutputClosed => Ok(Attached::OutputClosed),
        Outcome::Lost => Err(Error::failed(format!(
            "container {id}: disconnected before the container exited"
        ))),
    }
}

/// Sends a request that may turn the connection into a frame stream; returns the connection, the
/// answer (`Err` for an unreadable one), and the bytes that came after the answer line.
fn open(
    layout: &StateLayout,
    id: &shim_core::ContainerId,
    request: &Request,
) -> Result<(UnixStream, serde_json::Result<Response>, Vec<u8>)> {
    let mut stream = connect(layout, id)?;
    let mut line = serde_json::to_vec(request).expect("serializes");
    line.push(b'\n');
    stream
        .write_all(&line)
        .map_err(|e| Error::failed(format!("container {id}: send to the shim daemon: {e}")))?;
    let (answer, leftover) = read_answer(&mut stream)
        .map_err(|e| Error::failed(format!("container {id}: read the answer: {e}")))?;
    Ok((stream, serde_json::from_slice(&answer), leftover))
}

/// The answer line, and whatever arrived after it (the first frames).
fn read_answer(stream: &mut UnixStream) -> std::io::Result<(Vec<u8>, Vec<u8>)> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(newline) = buffer.iter().position(|&b| b == b'\n') {
            let rest = buffer.split_off(newline + 1);
            buffer.pop();
            return Ok((buffer, rest));
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::Error::new(ErrorKind::UnexpectedEof, "no answer"));
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
}

enum Outcome {
    Exited {
        code: i32,
        timed_out: bool,
    },
    Lost,
    /// The detach keys were typed: the process runs on.
    Detached,
    /// Our stdout or stderr was closed (`| head`): the process runs on, its output dropped.
    OutputClosed,
}

/// The exit code of a client whose output was closed: a process's killed by SIGPIPE (128 + 13),
/// as docker's own client ends then.
pub const OUTPUT_CLOSED: u8 = 141;

/// Relays until the exit frame.
fn relay(
    mut stream: UnixStream,
    mut input: Vec<u8>,
    forward_stdin: bool,
    tty: bool,
    mut detach: Option<DetachKeys>,
) -> Result<Outcome> {
    let io_error = |e: std::io::Error| Error::failed(format!("exec stream: {e}"));
    let winch = if tty {
        let mut mask = SigSet::empty();
        mask.add(Signal::SIGWINCH);
        nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&mask), None)
            .map_err(|e| io_error(e.into()))?;
        Some(
            SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
                .map_err(|e| io_error(e.into()))?,
        )
    } else {
        None
    };
    let stdin = std::io::stdin();
    let mut stdin_open = forward_stdin;
    let mut stdout = std::io::stdout();
    let mut stderr = std::io::stderr();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        while let Some((kind, payload)) =
            frame::decode(&mut input).map_err(|e| Error::failed(format!("exec stream: {e}")))?
        {
            match kind {
                FrameKind::Stdout => {
                    let written = stdout.write_all(&payload).and_then(|()| stdout.flush());
                    match written {
                        Err(e) if e.kind() == ErrorKind::BrokenPipe => {
                            return Ok(Outcome::OutputClosed)
                        }
                        other => other.map_err(io_error)?,
                    }
                }
                FrameKind::Stderr => match stderr.write_all(&payload) {
                    Err(e) if e.kind() == ErrorKind::BrokenPipe => {
                        return Ok(Outcome::OutputClosed)
                    }
                    other => other.map_err(io_error)?,
                },
                FrameKind::Notice => eprintln!("tether: {}", String::from_utf8_lossy(&payload)),
                FrameKind::Exit => {
                    let value: serde_json::Value =
                        serde_json::from_slice(&payload).unwrap_or_default();
                    return Ok(Outcome::Exited {
                        code: value["exit_code"].as_i64().unwrap_or(255) as i32,
                        timed_out: value["timed_out"].as_bool().unwrap_or(false),
                    });
                }
                _ => {}
            }
        }
        let mut fds = vec![PollFd::new(stream.as_fd(), PollFlags::POLLIN)];
        if stdin_open {
            fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
        }
        if let Some(winch) = &winch {
            fds.push(PollFd::new(winch.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(io_error(e.into())),
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(fds);
        if ready[0] {
            match stream.read(&mut chunk) {
                Ok(0) => return Ok(Outcome::Lost),
                Ok(n) => input.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(io_error(e)),
            }
        }
        let mut next = 1;
        if stdin_open {
            if ready[next] {
                let mut out = Vec::new();
                match stdin.lock().read(&mut chunk) {
                    Ok(0) | Err(_) => {
                        stdin_open = false;
                        frame::encode(&mut out, FrameKind::StdinEof, b"");
                    }
                    Ok(n) => match detach.as_mut().map(|keys| keys.feed(&chunk[..n])) {
                        None => frame::encode(&mut out, FrameKind::Stdin, &chunk[..n]),
                        Some(Typed::Input(typed)) if typed.is_empty() => {}
                        Some(Typed::Input(typed)) => {
                            frame::encode(&mut out, FrameKind::Stdin, &typed)
                        }
                        Some(Typed::Detach(typed)) => {
                            if !typed.is_empty() {
                                frame::encode(&mut out, FrameKind::Stdin, &typed);
                            }
                            let _ = stream.write_all(&out);
                            return Ok(Outcome::Detached);
                        }
                    },
                }
                // The process may end before its input does (`yes | ... head -1`), and the daemon
                // then stops taking input: that ends the input only. Output and the exit code
                // are still on their way.
                if stream.write_all(&out).is_err() {
                    stdin_open = false;
                }
            }
            next += 1;
        }
        if let Some(winch) = &winch {
            if ready[next] {
                while let Ok(Some(_)) = winch.read_signal() {}
                send_window_size(&mut stream);
            }
        }
    }
}

/// Tells the daemon this terminal's size, if stdin is one. (A resize the daemon no longer takes is
/// moot: the exit frame follows.)
fn send_window_size(stream: &mut UnixStream) {
    if let Some((rows, cols)) = window_size() {
        let mut out = Vec::new();
        frame::encode(
            &mut out,
            FrameKind::Resize,
            &frame::resize_payload(rows, cols),
        );
        let _ = stream.write_all(&out);
    }
}
