//! The one input path: what a client sends a process, from its stdin fifo or in its frames,
//! written to the process's stdin as far as it takes it, the rest held up to [`INPUT_LIMIT`].
//! Past the bound the fifo is not read, and clients are told to wait
//! ([`Copier::takes_input`](crate::copier::Copier::takes_input)): a process that does not read
//! holds its clients back; nothing is lost.

use crate::destination::InputFrom;
use crate::fdio::{set_nonblocking, write_some};
use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::AsRawFd;

/// Input held for a process that does not take it yet.
pub const INPUT_LIMIT: usize = 1 << 20;
/// Held-input capacity kept once it is passed on (more is given back).
const SHRINK_ABOVE: usize = 64 << 10;

/// One process's stdin and what is on its way there.
#[derive(Debug)]
pub(crate) struct Input {
    /// The client's fifo; none when clients hand their frames over (or once closed).
    fifo: Option<File>,
    from_clients: bool,
    /// Tether's write end of the process's stdin pipe, or its terminal; none once closed.
    to: Option<File>,
    pending: Vec<u8>,
    /// The input ended (CloseIO, or a client's end of input): close once all of it is written.
    ending: bool,
    /// After the end, the fifo was read empty: what the client wrote is all taken.
    drained: bool,
    /// A terminal has no end of input from a client (its other clients may type on).
    terminal: bool,
}

impl Input {
    pub fn new(from: InputFrom, to: File, terminal: bool) -> io::Result<Input> {
        set_nonblocking(&to)?;
        let (fifo, from_clients) = match from {
            InputFrom::Fifo(fifo) => {
                set_nonblocking(&fifo)?;
                (Some(fifo), false)
            }
            InputFrom::Client => (None, true),
        };
        Ok(Input {
            fifo,
            from_clients,
            to: Some(to),
            pending: Vec::new(),
            ending: false,
            drained: false,
            terminal,
        })
    }

    /// Reads the fifo under `source`; the process's stdin is polled for room under `dest`.
    pub fn register(&mut self, registry: &Registry, source: Token, dest: Token) -> io::Result<()> {
        if let Some(fifo) = &self.fifo {
            registry.register(&mut SourceFd(&fifo.as_raw_fd()), source, Interest::READABLE)?;
        }
        if let Some(to) = &self.to {
            let registered =
                registry.register(&mut SourceFd(&to.as_raw_fd()), dest, Interest::WRITABLE);
            if let Err(e) = registered {
                if let Some(fifo) = &self.fifo {
                    let _ = registry.deregister(&mut SourceFd(&fifo.as_raw_fd()));
                }
                return Err(e);
            }
        }
        Ok(())
    }

    pub fn takes_frames(&self) -> bool {
        self.from_clients
    }

    /// Writes what the process takes, and reads the fifo while there is room.
    pub fn pump(&mut self, registry: &Registry, buf: &mut Vec<u8>) {
        loop {
            self.flush(registry);
            if self.to.is_none() || self.pending.len() >= INPUT_LIMIT {
                return;
            }
            let Some(fifo) = &mut self.fifo else {
                return;
            };
            crate::output::make_buffer(buf);
            match fifo.read(&mut buf[..]) {
                Ok(n) if n > 0 => self.pending.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // Empty (tether holds the writer too, so never end-of-file): after the end, all
                // the client wrote has been read.
                Ok(_) | Err(_) => {
                    if self.ending {
                        self.drained = true;
                        self.flush(registry);
                    }
                    return;
                }
            }
        }
    }

    /// Input from a client's frames.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.to.is_some() {
            self.pending.extend_from_slice(bytes);
        }
    }

    /// Whether clients should wait before sending more.
    pub fn full(&self) -> bool {
        self.pending.len() >= INPUT_LIMIT
    }

    /// The input ended: the process gets end-of-file once everything is passed on, what the fifo
    /// still holds included (it may not have been read yet).
    pub fn end(&mut self, registry: &Registry, buf: &mut Vec<u8>) {
        if !(self.from_clients && self.terminal) {
            self.ending = true;
        }
        self.pump(registry, buf);
    }

    pub fn is_closed(&self) -> bool {
        self.to.is_none()
    }

    /// Writes what is pending as far as the process takes it; closes at the end of the input or
    /// when the process's side is gone.
    fn flush(&mut self, registry: &Registry) {
        let Some(to) = &mut self.to else {
            return;
        };
        match write_some(to, &self.pending) {
            Ok(n) => {
                self.pending.drain(..n);
                // A burst of input is not kept resident once it is passed on.
                if self.pending.is_empty() && self.pending.capacity() > SHRINK_ABOVE {
                    self.pending = Vec::new();
                }
            }
            // The process's end is gone: nothing more can be delivered.
            Err(_) => return self.close(registry),
        }
        let all_read = self.fifo.is_none() || self.drained;
        if self.ending && all_read && self.pending.is_empty() {
            self.close(registry);
        }
    }

    /// Closes both sides.
    pub fn close(&mut self, registry: &Registry) {
        for file in [self.fifo.take(), self.to.take()].into_iter().flatten() {
            let _ = registry.deregister(&mut SourceFd(&file.as_raw_fd()));
        }
        self.pending = Vec::new();
    }
}
