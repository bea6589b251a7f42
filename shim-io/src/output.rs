//! The one output pump: a process's pipe (or terminal) read into whatever [`Destination`] it has,
//! with one read loop, one end-of-stream rule, one buffer and one budget per turn.
//!
//! What differs by destination is only how a read is passed on and when reading waits:
//!
//! | destination | passed on | reading waits while |
//! |---|---|---|
//! | fifo, file, pipe | written, the rest held ([`relay`](crate::relay)) | all that may be held is held and the reader reads |
//! | log | framed into the log; spliced when raw and nobody taps it | never (a busy output is read in fewer, larger turns) |
//! | client | handed to the caller's frames | the client has [`CLIENT_HIGH_WATER`] queued |
//! | discard | dropped | never |

use crate::client::CLIENT_HIGH_WATER;
use crate::copier::{Frames, Notice};
use crate::destination::Destination;
use crate::fdio::set_nonblocking;
use crate::relay::Hold;
use crate::{LogFormat, LogSink, Stream};
use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, Instant, SystemTime};

/// What one read takes at most: the one buffer every output is read through.
pub const COPY_BUFFER: usize = 128 * 1024;
/// The most one output copies per turn of the event loop, so one busy stream cannot starve the
/// rest; the rest is backlog, copied before the loop sleeps.
pub const TURN_BUDGET: usize = 4 << 20;
/// What one splice into a raw log moves at most.
const SPLICE_MAX: usize = 1 << 20;
/// Coalescing: a log output that keeps waking the loop for small reads (less than
/// `COALESCE_BELOW` bytes, turns less than `COALESCE_WINDOW` apart) is left alone for
/// `COALESCE_HOLD` so its output gathers in the pipe and is copied in one turn. A container
/// writing flat out otherwise costs a wakeup, a read and a write per few KiB; this cuts the
/// daemon's CPU for a busy log by about a third. A single line after a quiet spell is still copied
/// at once; a line in a burst is in the log at most 1 ms later.
const COALESCE_BELOW: usize = 64 * 1024;
const COALESCE_WINDOW: Duration = Duration::from_millis(5);
const COALESCE_HOLD: Duration = Duration::from_millis(1);

/// What one turn of an output did, for the shim's log.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Turn {
    /// The budget ran out before the source was empty: pump again before sleeping.
    pub more: bool,
    /// A drop episode began: the reader took nothing for
    /// [`READER_GONE_AFTER`](crate::relay::READER_GONE_AFTER).
    pub dropping: bool,
    /// A drop episode ended (a reader is back, or the output ended); this many bytes were dropped
    /// in it.
    pub recovered: Option<u64>,
    /// The destination failed (a full disk, say); the message says how.
    pub error: Option<String>,
}

/// How far a turn reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reach {
    /// Up to [`TURN_BUDGET`], waiting for a full destination.
    Turn,
    /// All the pipe holds now, whatever a client has queued: the output is about to be closed.
    All,
}

/// What a turn works with, lent by the copier.
pub(crate) struct Cx<'a> {
    pub registry: &'a Registry,
    pub buf: &'a mut Vec<u8>,
    pub log: Option<&'a mut LogSink>,
    pub frames: Option<&'a mut dyn Frames>,
    pub notices: &'a mut Vec<Notice>,
    pub now: Instant,
    pub reach: Reach,
}

/// One output of a process and where it goes.
#[derive(Debug)]
pub(crate) struct Output {
    /// Tether's read end of the process's pipe or terminal; none once at its end.
    source: Option<File>,
    token: Token,
    /// Which output it is (a terminal's is its stdout).
    stream: Stream,
    /// For diagnostics.
    pub name: String,
    pub to: Destination,
    /// What a fifo, file or pipe destination holds.
    hold: Hold,
    /// Copies of what is read go out as [`Notice::Tapped`] (a log's attach clients).
    pub tapped: bool,
    /// When a turn last found output (coalescing).
    last_turn: Option<Instant>,
    /// Set while the source is deregistered to let output gather (coalescing).
    held_until: Option<Instant>,
}

impl Output {
    /// `source` is read on readiness under `token`; a destination that can be full is polled for
    /// room under `dest_token`. `label` ("stdout", "stderr" or "terminal") names the output in
    /// the record a drop leaves in it.
    pub fn new(
        registry: &Registry,
        source: OwnedFd,
        to: Destination,
        (token, dest_token): (Token, Token),
        label: &'static str,
        name: &str,
    ) -> io::Result<Output> {
        set_nonblocking(&source)?;
        if let Some(writer) = to.pollable() {
            set_nonblocking(writer)?;
        }
        registry.register(
            &mut SourceFd(&source.as_raw_fd()),
            token,
            Interest::READABLE,
        )?;
        if let Some(writer) = to.pollable() {
            let registered = registry.register(
                &mut SourceFd(&writer.as_raw_fd()),
                dest_token,
                Interest::WRITABLE,
            );
            if let Err(e) = registered {
                let _ = registry.deregister(&mut SourceFd(&source.as_raw_fd()));
                return Err(e);
            }
        }
        Ok(Output {
            source: Some(File::from(source)),
            token,
            stream: if label == "stderr" {
                Stream::Stderr
            } else {
                Stream::Stdout
            },
            name: name.to_string(),
            to,
            hold: Hold::new(label),
            tapped: false,
            last_turn: None,
            held_until: None,
        })
    }

    /// The process may still write to it (its end not reached).
    pub fn source_open(&self) -> bool {
        self.source.is_some()
    }

    /// Bytes dropped so far for want of a reader or a working destination.
    pub fn dropped(&self) -> u64 {
        self.hold.dropped()
    }

    /// When it must be looked at again without an event: a blocked fifo turns into a dropping one,
    /// a log output held to coalesce is read again.
    pub fn deadline(&self) -> Option<Instant> {
        self.hold
            .deadline()
            .into_iter()
            .chain(self.held_until)
            .min()
    }

    /// Its end is reached and nothing is held.
    pub fn finished(&self) -> bool {
        self.source.is_none() && self.hold.is_empty()
    }

    /// Its end is reached and all of it passed on to a fifo or pipe that still holds some: only a
    /// look at the level tells when the reader is done.
    pub fn lingering(&self) -> bool {
        self.finished() && self.to.pollable().is_some()
    }

    /// Nothing more to do: its end is reached, nothing is held, and a fifo was read empty (closing
    /// now gives the reader its end-of-file and loses nothing).
    pub fn done(&mut self) -> bool {
        self.source.is_none() && (!self.to.is_relayed() || self.hold.read_empty(&self.to))
    }

    /// Whether the reaped process's output reached its reader (see
    /// [`Hold::delivered`](crate::relay)): for a log or a client, once the pipe's end is read.
    pub fn delivered(&mut self, now: Instant, exited: Instant) -> bool {
        if self.source.is_some() {
            return false;
        }
        !self.to.is_relayed() || self.hold.delivered(&mut self.to, now, exited)
    }

    /// Reads what the source has and passes it on (see [`Reach`]).
    pub fn pump(&mut self, cx: &mut Cx<'_>) -> Turn {
        let mut turn = Turn::default();
        if self.to.is_relayed() {
            self.hold.flush(&mut self.to, cx.now, &mut turn);
        }
        let budget = match cx.reach {
            Reach::Turn => TURN_BUDGET,
            Reach::All => usize::MAX,
        };
        let mut splice = matches!(self.to, Destination::Log)
            && !self.tapped
            && cx
                .log
                .as_deref()
                .is_some_and(|sink| sink.options().format == LogFormat::Raw);
        if !splice {
            make_buffer(cx.buf);
        }
        let mut copied = 0;
        let ended = loop {
            if self.source.is_none() {
                break false;
            }
            if copied >= budget {
                turn.more = true;
                break false;
            }
            if !splice && !self.room(cx, &mut turn) {
                break false;
            }
            let Some(source) = &mut self.source else {
                break false;
            };
            let read = if splice {
                match cx
                    .log
                    .as_deref_mut()
                    .map(|sink| sink.splice_from(source.as_fd(), SPLICE_MAX))
                {
                    Some(Err(e)) if !is_transient(&e) => {
                        // Not spliceable now (or a splice error on the log side): through memory.
                        splice = false;
                        make_buffer(cx.buf);
                        continue;
                    }
                    Some(result) => result,
                    None => Err(io::ErrorKind::Unsupported.into()),
                }
            } else {
                source.read(&mut cx.buf[..])
            };
            match read {
                Ok(0) => break true,
                Ok(n) => {
                    copied += n;
                    if !splice {
                        self.pass_on(n, cx, &mut turn);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // EIO (a terminal whose other side closed) and the like: the end of the output.
                Err(_) => break true,
            }
        };
        if ended {
            self.end(cx, &mut turn);
        } else {
            self.maybe_hold(cx.registry, copied, cx.now);
        }
        turn
    }

    /// Whether the destination takes more now.
    fn room(&mut self, cx: &Cx<'_>, turn: &mut Turn) -> bool {
        match &self.to {
            Destination::Client(client) => {
                cx.reach == Reach::All
                    || cx
                        .frames
                        .as_deref()
                        .is_none_or(|frames| frames.queued(*client) < CLIENT_HIGH_WATER)
            }
            to if to.is_relayed() => self.hold.room(cx.now, turn),
            _ => true,
        }
    }

    /// Passes on the `len` bytes just read into the buffer.
    fn pass_on(&mut self, len: usize, cx: &mut Cx<'_>, turn: &mut Turn) {
        let bytes = &cx.buf[..len];
        match &mut self.to {
            Destination::Log => {
                if let Some(sink) = cx.log.as_deref_mut() {
                    sink.write(self.stream, bytes, SystemTime::now());
                }
                if self.tapped {
                    cx.notices.push(Notice::Tapped {
                        stream: self.stream,
                        bytes: bytes.to_vec(),
                    });
                }
            }
            Destination::Client(client) => {
                if let Some(frames) = cx.frames.as_deref_mut() {
                    frames.send(cx.registry, *client, self.stream, bytes);
                }
            }
            Destination::Discard => {}
            to => self.hold.pass_on(to, bytes, turn),
        }
    }

    /// The source ended, or is closed whatever it still holds (an orphan kept it open past its
    /// grace): stops reading it and ends the output where it goes (a log's unterminated last line
    /// is written, a drop episode leaves its record).
    pub fn end(&mut self, cx: &mut Cx<'_>, turn: &mut Turn) {
        let Some(source) = self.source.take() else {
            return;
        };
        if self.held_until.take().is_none() {
            let _ = cx.registry.deregister(&mut SourceFd(&source.as_raw_fd()));
        }
        match &self.to {
            Destination::Log => {
                if let Some(sink) = cx.log.as_deref_mut() {
                    sink.finish(self.stream, SystemTime::now());
                }
                cx.notices.push(Notice::Debug(format!(
                    "container {} reached end of stream",
                    self.stream.as_str()
                )));
            }
            to if to.is_relayed() => turn.recovered = self.hold.end().or(turn.recovered),
            _ => {}
        }
    }

    /// Holds a trickling log output back for a moment (see `COALESCE_HOLD`).
    fn maybe_hold(&mut self, registry: &Registry, copied: usize, now: Instant) {
        if copied == 0 || !matches!(self.to, Destination::Log) {
            return;
        }
        // Busy: the previous turn that found output was only moments ago.
        let busy = self
            .last_turn
            .is_some_and(|at| now.saturating_duration_since(at) < COALESCE_WINDOW);
        self.last_turn = Some(now);
        let Some(source) = &self.source else {
            return;
        };
        if busy
            && copied < COALESCE_BELOW
            && self.held_until.is_none()
            && registry
                .deregister(&mut SourceFd(&source.as_raw_fd()))
                .is_ok()
        {
            self.held_until = Some(now + COALESCE_HOLD);
        }
    }

    /// Reads a held-back output again once its time is up; returns whether it was due.
    pub fn resume_if_due(&mut self, registry: &Registry, now: Instant) -> bool {
        if self.held_until.is_none_or(|at| at > now) {
            return false;
        }
        self.held_until = None;
        if let Some(source) = &self.source {
            let _ = registry.register(
                &mut SourceFd(&source.as_raw_fd()),
                self.token,
                Interest::READABLE,
            );
        }
        true
    }

    /// Stops copying: deregisters and closes everything (what is held is lost).
    pub fn close(&mut self, registry: &Registry) {
        if let Some(source) = self.source.take() {
            if self.held_until.take().is_none() {
                let _ = registry.deregister(&mut SourceFd(&source.as_raw_fd()));
            }
        }
        if let Some(writer) = self.to.pollable() {
            let _ = registry.deregister(&mut SourceFd(&writer.as_raw_fd()));
        }
        self.to = Destination::Discard;
        self.hold.clear();
    }
}

/// Makes the one read buffer where it was given back. An empty buffer would read as the end of the
/// pipe. Zeroed by the allocator (fresh pages of the kernel's), not written: pages no read reaches
/// never become resident.
pub(crate) fn make_buffer(buf: &mut Vec<u8>) {
    if buf.is_empty() {
        *buf = vec![0; COPY_BUFFER];
    }
}

fn is_transient(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}
