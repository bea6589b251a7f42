//! `attach`: clients that join the container's stdio. Each sees the container's output from the
//! moment it attached (as frames), may write to its stdin (pipe or terminal) and resize its
//! terminal. A client that falls more than [`ATTACH_MAX_BEHIND`] behind is cut off with a notice:
//! a slow or stalled client never blocks the container, the log, or the other clients.

use super::nonblocking::{set_nonblocking, write_pending};
use super::record::ShimLog;
use super::{Daemon, CONTAINER_STDIN, STDERR, STDOUT};
use mio::unix::SourceFd;
use mio::{Interest, Token};
use shim_core::frame::{self, FrameKind};
use shim_core::protocol::{ErrorKind, Reply, Response};
use shim_io::Stream;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

/// How much output may wait for one attach client before it is cut off.
pub const ATTACH_MAX_BEHIND: usize = 1 << 20;
/// Stop reading attach clients' input while this much waits for the container to take it.
const INPUT_HIGH_WATER: usize = 1 << 20;

/// Where attach clients' input goes.
pub(super) struct ContainerInput {
    file: File,
    pending: Vec<u8>,
    terminal: bool,
}

impl ContainerInput {
    pub fn new(file: File, terminal: bool) -> io::Result<Self> {
        set_nonblocking(&file)?;
        Ok(ContainerInput {
            file,
            pending: Vec::new(),
            terminal,
        })
    }

    pub fn register(&self, registry: &mio::Registry) -> io::Result<()> {
        registry.register(
            &mut SourceFd(&self.file.as_raw_fd()),
            CONTAINER_STDIN,
            Interest::WRITABLE,
        )
    }
}

impl Daemon {
    pub(super) fn attach(&mut self, client: Token, log: &mut ShimLog) -> Response {
        if self.state.exit.is_some() || self.pending_exit.is_some() {
            let id = self.config.id.as_str();
            return Response::error(
                ErrorKind::InvalidState,
                format!("container {id} is not running"),
            );
        }
        self.attached.push(client);
        self.engine.set_tap(STDOUT, true);
        self.engine.set_tap(STDERR, true);
        log.line(format_args!(
            "attach client joined ({} attached)",
            self.attached.len()
        ));
        Response::Ok(Reply::Attach {
            tty: self.terminal.is_some(),
            stdin: self.input.is_some(),
        })
    }

    pub(super) fn attach_closed(&mut self, client: Token) {
        self.attached.retain(|c| *c != client);
        if self.attached.is_empty() {
            self.engine.set_tap(STDOUT, false);
            self.engine.set_tap(STDERR, false);
        }
    }

    pub(super) fn attach_frame(&mut self, kind: FrameKind, payload: Vec<u8>) {
        match kind {
            FrameKind::Stdin => {
                if let Some(input) = &mut self.input {
                    input.pending.extend_from_slice(&payload);
                }
                self.write_container_input();
            }
            // A terminal has no end of input; a pipe is closed once what is pending is written.
            FrameKind::StdinEof if self.input.as_ref().is_some_and(|i| !i.terminal) => {
                self.input_eof = true;
                self.write_container_input();
            }
            FrameKind::Resize => {
                if let (Some(terminal), Some((rows, cols))) =
                    (&self.terminal, frame::parse_resize(&payload))
                {
                    crate::sys::set_window(terminal, rows, cols);
                }
            }
            _ => {}
        }
    }

    /// Writes pending input into the container; called on input and on writability.
    pub(super) fn write_container_input(&mut self) {
        let Some(input) = &mut self.input else { return };
        let broken = write_pending(&mut input.file, &mut input.pending).is_err();
        let full = input.pending.len() >= INPUT_HIGH_WATER;
        if broken || (self.input_eof && input.pending.is_empty()) {
            let input = self.input.take().expect("checked above");
            let _ = self
                .poll
                .registry()
                .deregister(&mut SourceFd(&input.file.as_raw_fd()));
        }
        for client in self.attached.clone() {
            let incoming = self
                .control
                .set_reading(self.poll.registry(), client, !full);
            self.deferred_incoming.extend(incoming);
        }
    }

    /// Output read from the container, for every attached client.
    pub(super) fn forward_output(&mut self, stream: Stream, bytes: &[u8]) {
        let kind = match stream {
            Stream::Stdout => FrameKind::Stdout,
            Stream::Stderr => FrameKind::Stderr,
        };
        for client in self.attached.clone() {
            let behind = self.control.pending_output(client).unwrap_or(0);
            if behind > ATTACH_MAX_BEHIND {
                let notice = format!(
                    "attach: this client fell more than {} KiB behind the container's output and was disconnected",
                    ATTACH_MAX_BEHIND / 1024
                );
                self.control
                    .cut_off(self.poll.registry(), client, notice.as_bytes());
                self.attach_closed(client);
            } else {
                self.control
                    .send_frame(self.poll.registry(), client, kind, bytes);
            }
        }
    }

    /// The container exited: every attached client gets the exit code, then is closed.
    pub(super) fn attach_exit(&mut self, code: i32) {
        let payload = serde_json::json!({"exit_code": code, "timed_out": false}).to_string();
        for client in std::mem::take(&mut self.attached) {
            self.control.send_frame(
                self.poll.registry(),
                client,
                FrameKind::Exit,
                payload.as_bytes(),
            );
            self.control
                .close_when_flushed(self.poll.registry(), client);
        }
    }
}
