//! Copying a process's stdio between the shim's own pipes and a client's fifos, files or logging
//! pipes (what containerd names for a process).
//!
//! The container only ever writes to the shim's pipes. An [`OutputRelay`] copies a pipe into the
//! client's fifo, which tether holds open from both ends: a client (or containerd) that goes away
//! never causes EPIPE, and the data waits in the fifo for the next reader.
//!
//! What the relay holds is bounded, and what happens at the bound depends on the reader:
//!
//! - **A reader that reads** (the fifo's level falls, or it takes what is held) sets the pace: when
//!   the fifo is full and [`PENDING_LIMIT`] is held, the relay stops reading the container's pipe,
//!   and the container blocks on its full pipe until the reader catches up (backpressure, as with
//!   runc's shim). Nothing is lost.
//! - **A reader that is gone** (nothing taken for [`READER_GONE_AFTER`] while full, say containerd
//!   is restarting) must not stop the container: the relay drops output, whole lines only, counts
//!   it, and when a reader takes output again it writes one record into the stream itself,
//!   `[tether: N bytes of stdout dropped: no reader]`, before the output that follows. The shim's
//!   log says when an episode starts and ends.
//!
//! A process's exit is published only once its relays are [`OutputRelay::delivered`]: the pipe
//! reached end-of-file, nothing is held, and the fifo was read empty (`FIONREAD`), or its reader
//! stalled for [`DELIVERY_GRACE`], or nobody but tether has the fifo open to read (what is left
//! waits there for the next reader; the exit need not). containerd 1.6 closes its fifo readers as
//! soon as it handles an exit (`task.Delete` closes the IO before it waits for it): whatever was
//! still in the fifo then would be lost. For the same reason a relay keeps its end of the fifo
//! open until the fifo is read empty, and its copy lasts until then.
//!
//! An [`InputRelay`] copies the client's stdin fifo into the process's stdin, holding back (not
//! buffering) when the process does not read.
//!
//! # Loop contract
//!
//! The relays do no waiting of their own; the caller's mio loop drives them:
//!
//! - `register` each relay under two tokens (source, destination) and call `pump` on readiness of
//!   either. A [`Turn`] with `more` set means the [`TURN_BUDGET`] ran out: pump again before
//!   sleeping.
//! - Never sleep past [`OutputRelay::deadline`] (a blocked relay becomes a dropping one then), and
//!   while a relay is [`OutputRelay::lingering`], look at it again every little while: a reader
//!   emptying a fifo wakes nobody. Close it once [`OutputRelay::closable`].
//! - Once the process is reaped, ask [`OutputRelay::delivered`] before announcing its exit, and
//!   call [`OutputRelay::close_source`] when its orphan grace is over.
//!
//! # Example
//!
//! ```
//! use shim_io::relay::{Destination, OutputRelay};
//! use std::io::Write;
//!
//! let dir = tempfile::tempdir()?;
//! let log = dir.path().join("out.log");
//! let destination = Destination::open(&format!("file://{}", log.display()))?;
//! let (read_end, write_end) = nix::unistd::pipe()?;
//! let poll = mio::Poll::new()?;
//! let mut relay = OutputRelay::new(read_end, destination, "stdout")?;
//! relay.register(poll.registry(), mio::Token(1), mio::Token(2))?;
//! std::fs::File::from(write_end).write_all(b"hello\n")?; // and the process is gone: EOF
//! let mut buf = vec![0; 64 * 1024];
//! while relay.source_open() {
//!     relay.pump(poll.registry(), &mut buf);
//! }
//! let now = std::time::Instant::now();
//! assert!(relay.delivered(now, now));
//! assert_eq!(std::fs::read_to_string(&log)?, "hello\n");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use crate::fdio::{set_nonblocking, write_some};
use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

/// Output held in memory per stream once the client's fifo is full.
pub const PENDING_LIMIT: usize = 8 << 20;
/// A full relay whose reader took nothing for this long has no reader: it drops instead of
/// blocking the container.
pub const READER_GONE_AFTER: Duration = Duration::from_secs(5);
/// How long an exit waits for a reader that stopped taking the last of a process's output.
pub const DELIVERY_GRACE: Duration = Duration::from_secs(2);
/// Held-output capacity kept after a burst drained (more is given back).
const SHRINK_ABOVE: usize = 256 << 10;
/// Client fifos are enlarged to this (the default 64 KiB fills in moments).
const FIFO_SIZE: i32 = 1 << 20;
/// Input read ahead of a process that does not take it.
const INPUT_LIMIT: usize = 1 << 20;
/// The most one relay copies per turn of the event loop, so one busy stream cannot starve the rest.
pub const TURN_BUDGET: usize = 4 << 20;

/// Where a process's output goes.
#[derive(Debug)]
pub enum Destination {
    /// A fifo, held open for reading too so writing never fails for want of a reader (none only
    /// when it could not be opened again after `Destination::has_reader` looked).
    Fifo { writer: File, reader: Option<File> },
    /// A regular file (`file://` log URIs) or anything else that is not a fifo.
    File(File),
    /// A pipe to a logging binary (`binary://`).
    Pipe(File),
}

impl Destination {
    /// Opens the destination containerd named: a fifo path, or a `file://` URI (created, appended
    /// to). `""` means the output is not wanted.
    pub fn open(uri: &str) -> io::Result<Option<Destination>> {
        if uri.is_empty() {
            return Ok(None);
        }
        if let Some(path) = uri.strip_prefix("file://") {
            let path = Path::new(path);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .custom_flags(nix::libc::O_CLOEXEC)
                .open(path)?;
            return Ok(Some(Destination::File(file)));
        }
        if let Some((scheme, _)) = uri.split_once("://") {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("{scheme}:// stdio URIs are not supported (fifo paths, file:// and binary:// are)"),
            ));
        }
        let is_fifo = std::fs::metadata(uri)?.file_type().is_fifo();
        if !is_fifo {
            let file = OpenOptions::new().write(true).open(uri)?;
            return Ok(Some(Destination::File(file)));
        }
        // The reader first: opening the writer of a fifo without one fails (ENXIO) when nonblocking.
        let reader = OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_CLOEXEC)
            .open(uri)?;
        let writer = OpenOptions::new()
            .write(true)
            .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_CLOEXEC)
            .open(uri)?;
        let _ = nix::fcntl::fcntl(
            writer.as_raw_fd(),
            nix::fcntl::FcntlArg::F_SETPIPE_SZ(FIFO_SIZE),
        );
        Ok(Some(Destination::Fifo {
            writer,
            reader: Some(reader),
        }))
    }

    fn writer(&mut self) -> &mut File {
        match self {
            Destination::Fifo { writer, .. } => writer,
            Destination::File(file) | Destination::Pipe(file) => file,
        }
    }

    /// Bytes written and not read yet, for fifos and pipes (`FIONREAD` works on either end).
    fn queued(&self) -> Option<usize> {
        crate::sys::queued_bytes(self.pollable()?)
    }

    /// Whether someone other than tether has the fifo (or the logging binary's pipe) open to read.
    /// A pipe with no reader polls POLLERR on its write end, so tether's own read end of a fifo is
    /// closed for the look, and opened again through `/proc/self/fd` (the same fifo, even when its
    /// path is gone). What the fifo holds stays: tether's write end keeps it.
    fn has_reader(&mut self) -> bool {
        match self {
            Destination::Fifo { writer, reader } => {
                drop(reader.take());
                let alone = crate::sys::has_no_reader(writer);
                *reader = OpenOptions::new()
                    .read(true)
                    .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_CLOEXEC)
                    .open(format!("/proc/self/fd/{}", writer.as_raw_fd()))
                    .ok();
                !alone
            }
            Destination::Pipe(writer) => !crate::sys::has_no_reader(writer),
            Destination::File(_) => true,
        }
    }

    /// The writer, when it can be full (fifos and pipes): written nonblocking, and polled.
    fn pollable(&self) -> Option<&File> {
        match self {
            Destination::Fifo { writer, .. } | Destination::Pipe(writer) => Some(writer),
            Destination::File(_) => None,
        }
    }
}

/// Opens a client's stdin fifo for reading. Opened read-write, so the fifo never reports end of
/// input when one client closes it (another may attach); the end of input is CloseIO.
pub fn open_input_fifo(path: &str) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_CLOEXEC)
        .open(path)
}

/// What one turn of a relay did, for the shim's log.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Turn {
    /// The budget ran out before the source was empty: call again.
    pub more: bool,
    /// A drop episode began: the reader took nothing for [`READER_GONE_AFTER`].
    pub dropping: bool,
    /// A drop episode ended (a reader is back, or the output ended); this many bytes were dropped
    /// in it.
    pub recovered: Option<u64>,
    /// The destination failed (a full disk, say); the message says how.
    pub error: Option<String>,
}

impl Turn {
    #[cfg(test)]
    fn merge(&mut self, other: Turn) {
        self.more |= other.more;
        self.dropping |= other.dropping;
        self.recovered = self.recovered.or(other.recovered);
        self.error = self.error.take().or(other.error);
    }
}

/// Output being dropped because nobody reads it.
#[derive(Debug)]
struct DropEpisode {
    bytes: u64,
    /// The last byte dropped was not a newline: keep dropping up to the end of that line.
    mid_line: bool,
    /// A reader took output again: end the episode at the next line boundary.
    reader_back: bool,
}

/// Copies one output pipe of a process to its destination.
#[derive(Debug)]
pub struct OutputRelay {
    source: Option<File>,
    dest: Option<Destination>,
    /// `stdout`, `stderr` or `terminal`, for the record that says output was dropped.
    stream: &'static str,
    pending: VecDeque<u8>,
    /// Bytes in the fifo (or logger pipe) at the last look; a fall means the reader read.
    fifo_level: usize,
    /// The last time the reader took output (or the relay was made).
    last_progress: Instant,
    /// Since when the relay holds all it may and waits for the reader.
    blocked_since: Option<Instant>,
    episode: Option<DropEpisode>,
    dropped: u64,
    failed: bool,
}

impl OutputRelay {
    /// `source` is tether's read end of the process's pipe (or its terminal); `stream` names it in
    /// the record a drop leaves in the output.
    pub fn new(
        source: OwnedFd,
        dest: Option<Destination>,
        stream: &'static str,
    ) -> io::Result<OutputRelay> {
        set_nonblocking(&source)?;
        if let Some(writer) = dest.as_ref().and_then(Destination::pollable) {
            set_nonblocking(writer)?;
        }
        Ok(OutputRelay {
            source: Some(File::from(source)),
            dest,
            stream,
            pending: VecDeque::new(),
            fifo_level: 0,
            last_progress: Instant::now(),
            blocked_since: None,
            episode: None,
            dropped: 0,
            failed: false,
        })
    }

    /// Registers the source for reading and a fifo destination for writing.
    pub fn register(&mut self, registry: &Registry, source: Token, dest: Token) -> io::Result<()> {
        if let Some(file) = &self.source {
            registry.register(&mut SourceFd(&file.as_raw_fd()), source, Interest::READABLE)?;
        }
        if let Some(writer) = self.dest.as_ref().and_then(Destination::pollable) {
            registry.register(&mut SourceFd(&writer.as_raw_fd()), dest, Interest::WRITABLE)?;
        }
        Ok(())
    }

    /// The process side is still open (EOF not reached).
    pub fn source_open(&self) -> bool {
        self.source.is_some()
    }

    /// Everything read has been passed on and the source is closed.
    pub fn finished(&self) -> bool {
        self.source.is_none() && self.pending.is_empty()
    }

    /// Nothing is left to pass on and the fifo was read empty: closing now gives the reader its
    /// end-of-file and loses nothing. (While the fifo holds output, tether keeps it open: the
    /// output waits for the next reader, and the copy is there to tell when it is read.)
    pub fn closable(&mut self) -> bool {
        if !self.finished() {
            return false;
        }
        self.observe_reader(Instant::now());
        self.fifo_level == 0
    }

    /// Everything is passed on to a fifo that still holds some: only a look at its level tells
    /// when the reader is done.
    pub fn lingering(&self) -> bool {
        self.finished() && self.dest.is_some()
    }

    /// The process's output reached its reader: the source is closed, nothing is held and the fifo
    /// was read empty — or the reader stalled for [`DELIVERY_GRACE`], or there is no reader at all
    /// (what is left waits for the next reader). `since` is when the process exited: the stall
    /// counts from then at the earliest.
    pub fn delivered(&mut self, now: Instant, since: Instant) -> bool {
        if self.source.is_some() {
            return false;
        }
        self.observe_reader(now);
        if self.pending.is_empty() && self.fifo_level == 0 {
            return true;
        }
        now.saturating_duration_since(self.last_progress.max(since)) >= DELIVERY_GRACE
            || !self.dest.as_mut().is_some_and(Destination::has_reader)
    }

    /// When the relay must be looked at again without an event: a blocked relay turns into a
    /// dropping one after [`READER_GONE_AFTER`].
    pub fn deadline(&self) -> Option<Instant> {
        self.blocked_since
            .and_then(|since| since.checked_add(READER_GONE_AFTER))
    }

    /// Bytes dropped so far (no reader, or a failed destination).
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Reads what the source has (up to [`TURN_BUDGET`]) and passes it on; stops reading while the
    /// relay holds all it may and the reader is still there.
    pub fn pump(&mut self, registry: &Registry, buf: &mut [u8]) -> Turn {
        self.pump_at(registry, buf, Instant::now())
    }

    fn pump_at(&mut self, registry: &Registry, buf: &mut [u8], now: Instant) -> Turn {
        let mut turn = self.flush_at(now);
        let mut copied = 0;
        while self.source.is_some() {
            if copied >= TURN_BUDGET {
                turn.more = true;
                break;
            }
            if self.episode.is_none() && self.dest.is_some() && self.pending.len() >= PENDING_LIMIT
            {
                let since = *self.blocked_since.get_or_insert(now);
                if now.saturating_duration_since(since) < READER_GONE_AFTER {
                    break; // backpressure: the container waits for the reader
                }
                self.start_episode();
                turn.dropping = true;
            }
            let Some(source) = &mut self.source else {
                break;
            };
            match source.read(buf) {
                Ok(0) => turn.recovered = self.close_source(registry).or(turn.recovered),
                Ok(n) => {
                    copied += n;
                    self.pass_on(&buf[..n], &mut turn);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // EIO: a terminal whose other side closed: the end of its output.
                Err(_) => turn.recovered = self.close_source(registry).or(turn.recovered),
            }
        }
        turn
    }

    /// Closes the source whatever it still holds (an orphan kept it open past the grace period),
    /// or at its end-of-file. A drop episode ends with the output: its record goes after what is
    /// held, for the next reader, and the bytes it dropped are returned.
    pub fn close_source(&mut self, registry: &Registry) -> Option<u64> {
        if let Some(file) = self.source.take() {
            let _ = registry.deregister(&mut SourceFd(&file.as_raw_fd()));
        }
        let episode = self.episode.take()?;
        // Held output of a line longer than all that may be held: the record on a line of its own.
        if self.pending.back().is_some_and(|&b| b != b'\n') {
            self.pending.push_back(b'\n');
        }
        self.pending
            .extend(self.drop_record(episode.bytes).as_bytes());
        Some(episode.bytes)
    }

    /// The line that tells a reader output was dropped.
    fn drop_record(&self, bytes: u64) -> String {
        format!(
            "[tether: {bytes} bytes of {} dropped: no reader]\n",
            self.stream
        )
    }

    /// The reader is gone: what is held is kept up to its last whole line, and from here on output
    /// is dropped up to a line boundary.
    fn start_episode(&mut self) {
        self.blocked_since = None;
        let tail = match self.pending.iter().rposition(|&b| b == b'\n') {
            Some(last_newline) => self.pending.len() - last_newline - 1,
            // One line longer than all that is held: it cannot be kept whole.
            None => 0,
        };
        self.pending.truncate(self.pending.len() - tail);
        self.dropped += tail as u64;
        self.episode = Some(DropEpisode {
            bytes: tail as u64,
            mid_line: tail > 0 || self.pending.back().is_some_and(|&b| b != b'\n'),
            reader_back: false,
        });
    }

    fn pass_on(&mut self, data: &[u8], turn: &mut Turn) {
        if self.dest.is_none() {
            return;
        }
        let mut rest = data;
        if let Some(episode) = &mut self.episode {
            if episode.mid_line || !episode.reader_back {
                let upto = if episode.reader_back {
                    memchr::memchr(b'\n', rest).map_or(rest.len(), |i| i + 1)
                } else {
                    rest.len()
                };
                episode.bytes += upto as u64;
                self.dropped += upto as u64;
                if upto > 0 {
                    episode.mid_line = rest[upto - 1] != b'\n';
                }
                rest = &rest[upto..];
            }
            if episode.reader_back && !episode.mid_line {
                let bytes = episode.bytes;
                self.episode = None;
                let record = self.drop_record(bytes);
                self.pending.extend(record.as_bytes());
                turn.recovered = Some(bytes);
            }
            if rest.is_empty() {
                return;
            }
        }
        if self.pending.is_empty() {
            let Some(dest) = &mut self.dest else {
                return;
            };
            match write_some(dest.writer(), rest) {
                Ok(n) => rest = &rest[n..],
                Err(e) => {
                    self.fail(e, rest.len(), turn);
                    return;
                }
            }
        }
        // At most one read past the limit: the next turn stops reading until there is room.
        self.pending.extend(rest);
    }

    fn fail(&mut self, error: io::Error, lost: usize, turn: &mut Turn) {
        self.dropped += lost as u64;
        if !self.failed {
            turn.error = Some(error.to_string());
        }
        self.failed = true;
    }

    /// Looks at the fifo's level: a fall means its reader took output.
    fn observe_reader(&mut self, now: Instant) {
        let Some(level) = self.dest.as_ref().and_then(Destination::queued) else {
            return;
        };
        if level < self.fifo_level {
            self.reader_took(now);
        }
        self.fifo_level = level;
    }

    fn reader_took(&mut self, now: Instant) {
        self.last_progress = now;
        self.blocked_since = None;
        if let Some(episode) = &mut self.episode {
            episode.reader_back = true;
        }
    }

    /// Writes what is held, as far as the destination takes it.
    fn flush_at(&mut self, now: Instant) -> Turn {
        let mut turn = Turn::default();
        self.observe_reader(now);
        let Some(dest) = &mut self.dest else {
            self.pending.clear();
            return turn;
        };
        let held = self.pending.len();
        while !self.pending.is_empty() {
            let (front, _) = self.pending.as_slices();
            match write_some(dest.writer(), front) {
                Ok(0) => break,
                Ok(n) => {
                    self.pending.drain(..n);
                }
                Err(e) => {
                    let lost = self.pending.len();
                    self.pending.clear();
                    self.dropped += lost as u64;
                    if !self.failed {
                        turn.error = Some(e.to_string());
                    }
                    self.failed = true;
                }
            }
        }
        if self.pending.len() < held {
            // The fifo had room for held output: its reader made it.
            self.reader_took(now);
        }
        self.fifo_level = self
            .dest
            .as_ref()
            .and_then(Destination::queued)
            .unwrap_or(0);
        // A burst held while nobody read is not kept resident once it is passed on.
        if self.pending.is_empty() && self.pending.capacity() > SHRINK_ABOVE {
            self.pending = VecDeque::new();
        }
        turn
    }

    /// Stops relaying: deregisters and closes everything (what is held is lost).
    pub fn close(&mut self, registry: &Registry) {
        self.close_source(registry);
        if let Some(writer) = self.dest.as_ref().and_then(Destination::pollable) {
            let _ = registry.deregister(&mut SourceFd(&writer.as_raw_fd()));
        }
        self.dest = None;
        self.pending.clear();
    }
}

/// Copies a client's stdin fifo into a process's stdin.
#[derive(Debug)]
pub struct InputRelay {
    source: Option<File>,
    dest: Option<File>,
    pending: Vec<u8>,
    close_requested: bool,
    /// After the close request, the fifo was read empty: what the client wrote is all taken.
    drained: bool,
}

impl InputRelay {
    /// `source` is the client's fifo (see [`open_input_fifo`]); `dest` is tether's write end of the
    /// process's stdin pipe, or its terminal.
    pub fn new(source: File, dest: File) -> io::Result<InputRelay> {
        set_nonblocking(&dest)?;
        Ok(InputRelay {
            source: Some(source),
            dest: Some(dest),
            pending: Vec::new(),
            close_requested: false,
            drained: false,
        })
    }

    pub fn register(&mut self, registry: &Registry, source: Token, dest: Token) -> io::Result<()> {
        if let Some(file) = &self.source {
            registry.register(&mut SourceFd(&file.as_raw_fd()), source, Interest::READABLE)?;
        }
        if let Some(file) = &self.dest {
            registry.register(&mut SourceFd(&file.as_raw_fd()), dest, Interest::WRITABLE)?;
        }
        Ok(())
    }

    /// Reads the client's input while the process takes it.
    pub fn pump(&mut self, registry: &Registry, buf: &mut [u8]) {
        loop {
            self.flush(registry);
            if self.dest.is_none() || self.pending.len() >= INPUT_LIMIT {
                return;
            }
            let Some(source) = &mut self.source else {
                return;
            };
            match source.read(buf) {
                Ok(n) if n > 0 => self.pending.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // Empty (tether holds the writer too, so never end-of-file): after CloseIO, all
                // the client wrote has been read.
                Ok(_) | Err(_) => {
                    if self.close_requested {
                        self.drained = true;
                        self.flush(registry);
                    }
                    return;
                }
            }
        }
    }

    fn flush(&mut self, registry: &Registry) {
        let Some(dest) = &mut self.dest else {
            self.pending.clear();
            return;
        };
        while !self.pending.is_empty() {
            match dest.write(&self.pending) {
                Ok(n) => {
                    self.pending.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // The process's end is gone: nothing more can be delivered.
                Err(_) => {
                    self.close(registry);
                    return;
                }
            }
        }
        if self.close_requested && (self.drained || self.source.is_none()) {
            self.close(registry);
        }
    }

    /// The client's input ended (CloseIO): the process gets end-of-file once everything the client
    /// wrote is passed on, what the fifo still holds included (it may not have been read yet).
    pub fn close_after_flush(&mut self, registry: &Registry, buf: &mut [u8]) {
        self.close_requested = true;
        self.pump(registry, buf);
    }

    /// Closes both sides.
    pub fn close(&mut self, registry: &Registry) {
        for file in [self.source.take(), self.dest.take()].into_iter().flatten() {
            let _ = registry.deregister(&mut SourceFd(&file.as_raw_fd()));
        }
        self.pending.clear();
    }

    pub fn is_closed(&self) -> bool {
        self.dest.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client's fifo with tether's relay writing into it from a pipe.
    struct Setup {
        _dir: tempfile::TempDir,
        fifo: std::path::PathBuf,
        poll: mio::Poll,
        relay: OutputRelay,
        container: File,
    }

    fn setup() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("stdout");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let destination = Destination::open(fifo.to_str().unwrap()).unwrap();
        let (read_end, write_end) = nix::unistd::pipe().unwrap();
        let poll = mio::Poll::new().unwrap();
        let mut relay = OutputRelay::new(read_end, destination, "stdout").unwrap();
        relay.register(poll.registry(), Token(0), Token(1)).unwrap();
        let container = File::from(write_end);
        set_nonblocking(&container).unwrap();
        Setup {
            _dir: dir,
            fifo,
            poll,
            relay,
            container,
        }
    }

    /// Numbered 16-byte records, so a gap, a repeat or a torn record shows.
    fn records(from: usize, count: usize) -> Vec<u8> {
        (from..from + count)
            .flat_map(|n| format!("{n:015}\n").into_bytes())
            .collect()
    }

    /// The container writes `data` as fast as its pipe takes it, the relay copying at `now`;
    /// returns how much the container got written before it would block.
    fn write_through(setup: &mut Setup, data: &[u8], now: Instant) -> (usize, Turn) {
        let mut buf = vec![0; 64 * 1024];
        let mut total = Turn::default();
        let mut written = 0;
        let write = |setup: &mut Setup, written: usize| {
            let end = (written + 16 * 1024).min(data.len());
            match setup.container.write(&data[written..end]) {
                Ok(n) => Some(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => None,
                Err(e) => panic!("write: {e}"),
            }
        };
        while written < data.len() {
            let n = match write(setup, written) {
                Some(n) => n,
                None => {
                    total.merge(setup.relay.pump_at(setup.poll.registry(), &mut buf, now));
                    match write(setup, written) {
                        Some(n) => n,
                        None => break, // the relay does not read: the container is held back
                    }
                }
            };
            written += n;
            total.merge(setup.relay.pump_at(setup.poll.registry(), &mut buf, now));
        }
        (written, total)
    }

    fn open_reader(path: &Path) -> File {
        OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NONBLOCK)
            .open(path)
            .unwrap()
    }

    /// Reads what the fifo holds, letting the relay refill it (and read its source) at `now`.
    fn read_back(setup: &mut Setup, reader: &mut File, now: Instant) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = vec![0; 64 * 1024];
        let mut idle = 0;
        while idle < 3 {
            match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    out.extend_from_slice(&buf[..n]);
                    idle = 0;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => idle += 1,
                Err(e) => panic!("read: {e}"),
            }
            setup.relay.pump_at(setup.poll.registry(), &mut buf, now);
        }
        out
    }

    fn fifo_capacity(setup: &Setup) -> usize {
        let writer = match &setup.relay.dest {
            Some(Destination::Fifo { writer, .. }) => writer,
            _ => panic!("not a fifo"),
        };
        nix::fcntl::fcntl(writer.as_raw_fd(), nix::fcntl::FcntlArg::F_GETPIPE_SZ).unwrap() as usize
    }

    fn close_container(setup: &mut Setup) {
        drop(std::mem::replace(
            &mut setup.container,
            File::open("/dev/null").unwrap(),
        ));
    }

    /// Every 16-byte record is whole; returns the numbers in order and the drop records.
    fn parse(output: &[u8]) -> (Vec<usize>, Vec<String>) {
        let mut numbers = Vec::new();
        let mut notes = Vec::new();
        for line in output.split_inclusive(|&b| b == b'\n') {
            let text = std::str::from_utf8(line).unwrap();
            assert!(text.ends_with('\n'), "torn record {text:?}");
            if text.starts_with("[tether:") {
                notes.push(text.trim_end().to_owned());
            } else {
                assert_eq!(text.len(), 16, "torn or glued record {text:?}");
                numbers.push(text.trim_end().parse().unwrap());
            }
        }
        (numbers, notes)
    }

    #[test]
    fn output_nobody_reads_waits_for_the_next_reader_in_order() {
        let mut setup = setup();
        let now = Instant::now();
        let data = records(1, 3 * 65536); // 3 MiB: more than the fifo holds
        let (written, turn) = write_through(&mut setup, &data, now);
        assert_eq!((written, turn.error), (data.len(), None));
        assert!(!setup.relay.finished(), "the fifo cannot hold it all");
        let mut reader = open_reader(&setup.fifo.clone());
        let got = read_back(&mut setup, &mut reader, now);
        assert!(got == data, "the reader got the output out of order");
        assert_eq!(setup.relay.dropped(), 0);
    }

    #[test]
    fn a_full_relay_stops_reading_and_loses_nothing_while_its_reader_reads() {
        let mut setup = setup();
        let now = Instant::now();
        let held = fifo_capacity(&setup) + PENDING_LIMIT;
        let data = records(1, (held + (4 << 20)) / 16);
        let (written, _) = write_through(&mut setup, &data, now);
        assert!(
            written < data.len(),
            "the container is held back once the relay is full"
        );
        // A slow reader, just within the bound each time: everything arrives, in order.
        let mut reader = open_reader(&setup.fifo.clone());
        let mut got = Vec::new();
        let mut rest = &data[written..];
        let mut buf = vec![0; 64 * 1024];
        let mut at = now;
        let mut open = true;
        for _ in 0..100_000 {
            at += READER_GONE_AFTER / 2;
            if let Ok(n) = reader.read(&mut buf) {
                got.extend_from_slice(&buf[..n]);
            }
            if let Ok(n) = setup.container.write(rest) {
                rest = &rest[n..];
            }
            if rest.is_empty() && open {
                close_container(&mut setup);
                open = false;
            }
            setup.relay.pump_at(setup.poll.registry(), &mut buf, at);
            if got.len() == data.len() {
                break;
            }
        }
        assert_eq!(setup.relay.dropped(), 0);
        assert!(got == data, "a reading reader gets everything, in order");
    }

    #[test]
    fn a_reader_gone_for_long_gets_whole_lines_and_a_record_of_the_drop() {
        let mut setup = setup();
        let now = Instant::now();
        let held = fifo_capacity(&setup) + PENDING_LIMIT;
        let data = records(1, (held + (4 << 20)) / 16);
        let (written, _) = write_through(&mut setup, &data, now);
        assert!(written < data.len());
        assert_eq!(
            setup.relay.dropped(),
            0,
            "nothing is dropped before the reader is gone"
        );
        // Nobody read for READER_GONE_AFTER: the container is let go, output dropped.
        let later = now + READER_GONE_AFTER;
        let (rest, turn) = write_through(&mut setup, &data[written..], later);
        assert_eq!(
            rest,
            data.len() - written,
            "the container is not blocked any more"
        );
        assert!(turn.dropping, "the start of the episode is reported");
        assert!(setup.relay.dropped() > 0);
        // A reader comes back; the container goes on writing.
        let mut reader = open_reader(&setup.fifo.clone());
        let mut got = read_back(&mut setup, &mut reader, later);
        let after = records(data.len() / 16 + 1, 1000);
        write_through(&mut setup, &after, later);
        got.extend(read_back(&mut setup, &mut reader, later));
        let (numbers, notes) = parse(&got);
        assert_eq!(notes.len(), 1, "one record per episode: {notes:?}");
        let dropped_lines = data.len() / 16 + 1000 - numbers.len();
        assert_eq!(
            notes[0],
            format!(
                "[tether: {} bytes of stdout dropped: no reader]",
                dropped_lines * 16
            )
        );
        assert_eq!(setup.relay.dropped() as usize, dropped_lines * 16);
        assert!(numbers.windows(2).all(|w| w[0] < w[1]), "in order");
        assert_eq!(
            numbers.last(),
            Some(&(data.len() / 16 + 1000)),
            "the live output follows"
        );
    }

    #[test]
    fn delivery_waits_until_the_fifo_is_read_empty() {
        let mut setup = setup();
        let now = Instant::now();
        let data = records(1, 100);
        let mut reader = open_reader(&setup.fifo.clone());
        write_through(&mut setup, &data, now);
        close_container(&mut setup);
        let mut buf = vec![0; 64];
        setup.relay.pump_at(setup.poll.registry(), &mut buf, now);
        assert!(setup.relay.finished(), "nothing held");
        assert!(!setup.relay.delivered(now, now), "the fifo is not read yet");
        let got = read_back(&mut setup, &mut reader, now);
        assert!(got == data);
        assert!(setup.relay.delivered(now, now));
    }

    #[test]
    fn delivery_gives_up_on_a_reader_that_stalls() {
        let mut setup = setup();
        let now = Instant::now();
        let _stalled = open_reader(&setup.fifo.clone());
        write_through(&mut setup, &records(1, 100), now);
        close_container(&mut setup);
        let mut buf = vec![0; 64];
        setup.relay.pump_at(setup.poll.registry(), &mut buf, now);
        let exited = now + Duration::from_secs(1);
        assert!(!setup.relay.delivered(exited + DELIVERY_GRACE / 2, exited));
        assert!(setup.relay.delivered(exited + DELIVERY_GRACE, exited));
    }

    #[test]
    fn an_exit_does_not_wait_for_a_fifo_nobody_has_open_and_its_output_waits_there() {
        let mut setup = setup();
        let now = Instant::now();
        let data = records(1, 100);
        write_through(&mut setup, &data, now);
        close_container(&mut setup);
        let mut buf = vec![0; 64];
        setup.relay.pump_at(setup.poll.registry(), &mut buf, now);
        assert!(setup.relay.delivered(now, now), "nobody reads: at once");
        assert!(!setup.relay.closable(), "the fifo still holds the output");
        let mut reader = open_reader(&setup.fifo.clone());
        assert!(read_back(&mut setup, &mut reader, now) == data);
        assert!(setup.relay.closable(), "read empty");
    }

    #[test]
    fn a_reader_that_made_room_does_not_make_the_fifo_closable_before_it_is_read_empty() {
        let mut setup = setup();
        let now = Instant::now();
        let mut reader = open_reader(&setup.fifo.clone());
        let capacity = fifo_capacity(&setup);
        let data = records(1, (capacity + (32 << 10)) / 16);
        write_through(&mut setup, &data, now);
        let mut buf = vec![0; 64 * 1024];
        let mut got = vec![0; 64 * 1024];
        let n = reader.read(&mut got).unwrap();
        got.truncate(n);
        close_container(&mut setup);
        setup.relay.pump_at(setup.poll.registry(), &mut buf, now);
        // Room was made, held output went on; what the fifo holds is not read yet.
        assert!(setup.relay.finished(), "nothing held any more");
        assert!(!setup.relay.closable(), "the fifo is not read empty");
        assert!(!setup.relay.delivered(now, now), "its reader reads on");
        got.extend(read_back(&mut setup, &mut reader, now));
        assert!(got == data);
        assert!(setup.relay.delivered(now, now));
        assert!(setup.relay.closable());
    }

    #[test]
    fn a_drop_that_lasts_to_the_end_of_the_output_leaves_its_record_for_the_next_reader() {
        let mut setup = setup();
        let now = Instant::now();
        let held = fifo_capacity(&setup) + PENDING_LIMIT;
        let data = records(1, (held + (4 << 20)) / 16);
        let (written, _) = write_through(&mut setup, &data, now);
        let later = now + READER_GONE_AFTER;
        let (_, turn) = write_through(&mut setup, &data[written..], later);
        assert!(turn.dropping);
        close_container(&mut setup);
        let mut buf = vec![0; 64 * 1024];
        let turn = setup.relay.pump_at(setup.poll.registry(), &mut buf, later);
        let dropped = setup.relay.dropped();
        assert_eq!(
            turn.recovered,
            Some(dropped),
            "the episode ends with the output"
        );
        let mut reader = open_reader(&setup.fifo.clone());
        let (numbers, notes) = parse(&read_back(&mut setup, &mut reader, later));
        assert_eq!(
            notes,
            [format!(
                "[tether: {dropped} bytes of stdout dropped: no reader]"
            )]
        );
        assert_eq!(numbers.len() * 16 + dropped as usize, data.len());
        assert!(
            numbers.iter().enumerate().all(|(i, n)| *n == i + 1),
            "the first lines, in order"
        );
    }

    #[test]
    fn a_reader_that_leaves_causes_no_error_and_the_next_one_continues() {
        let mut setup = setup();
        let now = Instant::now();
        let first = records(1, 1000);
        let mut reader = open_reader(&setup.fifo.clone());
        write_through(&mut setup, &first, now);
        let got = read_back(&mut setup, &mut reader, now);
        assert!(got == first);
        drop(reader);
        let second = records(1001, 1000);
        let (_, turn) = write_through(&mut setup, &second, now);
        assert_eq!(turn.error, None);
        let mut reader = open_reader(&setup.fifo.clone());
        let got = read_back(&mut setup, &mut reader, now);
        assert!(got == second);
    }

    #[test]
    fn close_io_passes_on_what_the_fifo_still_holds_then_ends_the_input() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("stdin");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let source = open_input_fifo(fifo.to_str().unwrap()).unwrap();
        let (process_end, our_end) = nix::unistd::pipe().unwrap();
        let poll = mio::Poll::new().unwrap();
        let mut relay = InputRelay::new(source, File::from(our_end)).unwrap();
        relay.register(poll.registry(), Token(0), Token(1)).unwrap();
        // The client writes everything and asks for CloseIO before the relay read any of it.
        let data = records(1, 1000);
        let mut client = OpenOptions::new().write(true).open(&fifo).unwrap();
        client.write_all(&data).unwrap();
        drop(client);
        let mut buf = vec![0; 64 * 1024];
        relay.close_after_flush(poll.registry(), &mut buf);
        assert!(
            relay.is_closed(),
            "everything fitted the pipe: the input is over"
        );
        let mut got = Vec::new();
        File::from(process_end).read_to_end(&mut got).unwrap();
        assert!(
            got == data,
            "the process got {} of {} bytes",
            got.len(),
            data.len()
        );
    }

    #[test]
    fn the_end_of_the_output_closes_the_fifo_once_it_is_passed_on() {
        let mut setup = setup();
        let now = Instant::now();
        let data = records(1, 100);
        let mut reader = open_reader(&setup.fifo.clone());
        write_through(&mut setup, &data, now);
        close_container(&mut setup);
        let mut buf = vec![0; 64];
        let _ = setup.relay.pump(setup.poll.registry(), &mut buf);
        assert!(setup.relay.finished());
        setup.relay.close(setup.poll.registry());
        let mut got = Vec::new();
        reader.read_to_end(&mut got).unwrap();
        assert!(got == data, "everything, then end-of-file");
    }
}
