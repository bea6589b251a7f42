//! Stdio to and from a control client (tether's `exec` and `attach`): a process's output read from
//! its pipe (or terminal) and handed to the client as frames, and what the client typed written to
//! the process. Both are flow-controlled: output is read only while the client takes it, and input
//! is accepted only while the process takes it.

use super::nonblocking::{set_nonblocking, write_pending};
use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use shim_core::frame::FrameKind;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd};

/// Output is left in the pipe while this much is queued for the client (the process then blocks on
/// a full pipe, as it would writing to a slow terminal).
pub const CLIENT_HIGH_WATER: usize = 1 << 20;
/// Input frames are left unread while this much waits for the process to take it.
pub const INPUT_HIGH_WATER: usize = 1 << 20;

/// A process's output for a client. Without a client (detached, or gone) it is read and dropped, so
/// the process never blocks on it.
#[derive(Debug)]
pub struct ClientOutput {
    file: File,
    pub kind: FrameKind,
    pub client: Option<Token>,
    open: bool,
}

/// What one turn of a [`ClientOutput`] read.
pub enum Taken {
    Data(usize),
    /// Nothing now.
    Empty,
    /// End of the output (EIO from a terminal whose other side closed counts as the end too).
    End,
}

impl ClientOutput {
    /// Reads `fd` on readiness under `token`.
    pub fn new(
        fd: OwnedFd,
        kind: FrameKind,
        client: Option<Token>,
        registry: &Registry,
        token: Token,
    ) -> io::Result<ClientOutput> {
        set_nonblocking(&fd)?;
        registry.register(&mut SourceFd(&fd.as_raw_fd()), token, Interest::READABLE)?;
        Ok(ClientOutput {
            file: File::from(fd),
            kind,
            client,
            open: true,
        })
    }

    /// Whether its process may still write to it.
    pub fn is_open(&self) -> bool {
        self.open
    }

    /// Reads what is there into `buf`.
    pub fn read(&mut self, buf: &mut [u8]) -> Taken {
        if !self.open {
            return Taken::End;
        }
        loop {
            return match self.file.read(buf) {
                Ok(0) => Taken::End,
                Ok(n) => Taken::Data(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Taken::Empty,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => Taken::End,
            };
        }
    }

    /// Stops reading (its end, or an orphan holds it past the grace period).
    pub fn close(&mut self, registry: &Registry) {
        if self.open {
            let _ = registry.deregister(&mut SourceFd(&self.file.as_raw_fd()));
            self.open = false;
        }
    }
}

/// What clients send a process: written as far as the process takes it, the rest held (up to
/// [`INPUT_HIGH_WATER`], past which the clients are not read).
#[derive(Debug)]
pub struct ClientInput {
    file: File,
    pending: Vec<u8>,
    /// The client's input ended: close once `pending` is written (a terminal has no end of input).
    eof: bool,
    terminal: bool,
    closed: bool,
}

impl ClientInput {
    pub fn new(file: File, terminal: bool) -> io::Result<ClientInput> {
        set_nonblocking(&file)?;
        Ok(ClientInput {
            file,
            pending: Vec::new(),
            eof: false,
            terminal,
            closed: false,
        })
    }

    pub fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        registry.register(
            &mut SourceFd(&self.file.as_raw_fd()),
            token,
            Interest::WRITABLE,
        )
    }

    /// Takes input from a client.
    pub fn push(&mut self, bytes: &[u8]) {
        if !self.closed {
            self.pending.extend_from_slice(bytes);
        }
    }

    /// The client's input ended.
    pub fn end(&mut self) {
        if !self.terminal {
            self.eof = true;
        }
    }

    /// Whether clients should wait before sending more.
    pub fn full(&self) -> bool {
        self.pending.len() >= INPUT_HIGH_WATER
    }

    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Writes what the process takes now; closes at the end of the input or when the process's
    /// side is gone.
    pub fn flush(&mut self, registry: &Registry) {
        if self.closed {
            return;
        }
        let broken = write_pending(&mut self.file, &mut self.pending).is_err();
        if broken || (self.eof && self.pending.is_empty()) {
            self.close(registry);
        }
    }

    pub fn close(&mut self, registry: &Registry) {
        if !self.closed {
            let _ = registry.deregister(&mut SourceFd(&self.file.as_raw_fd()));
            self.pending = Vec::new();
            self.closed = true;
        }
    }
}
