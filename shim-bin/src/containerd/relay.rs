//! Copying a process's stdio between tether's own pipes and what containerd named for it.
//!
//! The container only ever writes to tether's pipes. An [`OutputRelay`] copies a pipe into the
//! client's fifo, which tether holds open from both ends: a client (or containerd) that goes away
//! never causes EPIPE, and the data waits in the fifo for the next reader. When the fifo is full,
//! up to [`PENDING_LIMIT`] more is held in memory; past that, output is dropped (counted, and said
//! once in the shim's log) rather than ever blocking the container. A reader that comes back finds
//! what the fifo and the memory held, in order, and then the live output.
//!
//! An [`InputRelay`] copies the client's stdin fifo into the process's stdin, holding back (not
//! buffering) when the process does not read.

use crate::daemon::nonblocking::set_nonblocking;
use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// Output held in memory per stream once the client's fifo is full.
pub const PENDING_LIMIT: usize = 8 << 20;
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
    /// A fifo, held open for reading too so writing never fails for want of a reader.
    Fifo { writer: File, _reader: File },
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
            _reader: reader,
        }))
    }

    fn writer(&mut self) -> &mut File {
        match self {
            Destination::Fifo { writer, .. } => writer,
            Destination::File(file) | Destination::Pipe(file) => file,
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

/// What one turn of a relay did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Turn {
    /// The budget ran out before the source was empty: call again.
    pub more: bool,
    /// Bytes dropped in this turn because the destination was full past [`PENDING_LIMIT`].
    pub dropped: u64,
    /// The destination failed (a full disk, say); the message says how.
    pub error: Option<String>,
}

/// Copies one output pipe of a process to its destination.
#[derive(Debug)]
pub struct OutputRelay {
    source: Option<File>,
    dest: Option<Destination>,
    pending: VecDeque<u8>,
    dropped: u64,
    /// Dropping now; the next drop is not reported again until output flows once more.
    dropping: bool,
    failed: bool,
}

impl OutputRelay {
    /// `source` is tether's read end of the process's pipe (or its terminal).
    pub fn new(source: OwnedFd, dest: Option<Destination>) -> io::Result<OutputRelay> {
        set_nonblocking(&source)?;
        if let Some(writer) = dest.as_ref().and_then(Destination::pollable) {
            set_nonblocking(writer)?;
        }
        Ok(OutputRelay {
            source: Some(File::from(source)),
            dest,
            pending: VecDeque::new(),
            dropped: 0,
            dropping: false,
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

    /// Bytes dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Reads what the source has (up to [`TURN_BUDGET`]) and passes it on.
    pub fn pump(&mut self, registry: &Registry, buf: &mut [u8]) -> Turn {
        let mut turn = Turn::default();
        let mut copied = 0;
        while let Some(source) = &mut self.source {
            if copied >= TURN_BUDGET {
                turn.more = true;
                break;
            }
            match source.read(buf) {
                Ok(0) => self.close_source(registry),
                Ok(n) => {
                    copied += n;
                    self.pass_on(&buf[..n], &mut turn);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // EIO: a terminal whose other side closed: the end of its output.
                Err(_) => self.close_source(registry),
            }
        }
        turn
    }

    /// Closes the source whatever it still holds (an orphan kept it open past the grace period).
    pub fn close_source(&mut self, registry: &Registry) {
        if let Some(file) = self.source.take() {
            let _ = registry.deregister(&mut SourceFd(&file.as_raw_fd()));
        }
    }

    fn pass_on(&mut self, data: &[u8], turn: &mut Turn) {
        let Some(dest) = &mut self.dest else {
            return;
        };
        let mut rest = data;
        if self.pending.is_empty() {
            match write_some(dest.writer(), rest) {
                Ok(n) => rest = &rest[n..],
                Err(e) => {
                    self.fail(e, rest.len(), turn);
                    return;
                }
            }
        }
        if rest.is_empty() {
            self.dropping = false;
            return;
        }
        let room = PENDING_LIMIT.saturating_sub(self.pending.len());
        let kept = rest.len().min(room);
        self.pending.extend(&rest[..kept]);
        let lost = (rest.len() - kept) as u64;
        if lost > 0 {
            self.dropped += lost;
            if !self.dropping {
                turn.dropped += lost;
            }
            self.dropping = true;
        } else {
            self.dropping = false;
        }
    }

    fn fail(&mut self, error: io::Error, lost: usize, turn: &mut Turn) {
        self.dropped += lost as u64;
        if !self.failed {
            turn.error = Some(error.to_string());
        }
        self.failed = true;
    }

    /// The destination can take more: write what is held.
    pub fn flush(&mut self) -> Turn {
        let mut turn = Turn::default();
        let Some(dest) = &mut self.dest else {
            self.pending.clear();
            return turn;
        };
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

/// Writes as much of `data` as `file` takes now (0 when it is full).
fn write_some(file: &mut File, data: &[u8]) -> io::Result<usize> {
    let mut written = 0;
    while written < data.len() {
        match file.write(&data[written..]) {
            Ok(0) => break,
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(written)
}

/// Copies a client's stdin fifo into a process's stdin.
#[derive(Debug)]
pub struct InputRelay {
    source: Option<File>,
    dest: Option<File>,
    pending: Vec<u8>,
    close_requested: bool,
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
                Ok(0) => return,
                Ok(n) => self.pending.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return,
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
        if self.close_requested {
            self.close(registry);
        }
    }

    /// The client's input ended (CloseIO): the process gets end-of-file once what is held is written.
    pub fn close_after_flush(&mut self, registry: &Registry) {
        self.close_requested = true;
        self.flush(registry);
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
        let mut relay = OutputRelay::new(read_end, destination).unwrap();
        relay.register(poll.registry(), Token(0), Token(1)).unwrap();
        Setup {
            _dir: dir,
            fifo,
            poll,
            relay,
            container: File::from(write_end),
        }
    }

    /// Numbered 16-byte records, so a gap or a repeat shows.
    fn records(from: usize, count: usize) -> Vec<u8> {
        (from..from + count)
            .flat_map(|n| format!("{n:015}\n").into_bytes())
            .collect()
    }

    /// The container writes `data`, the relay copies it as the container goes.
    fn write_through(setup: &mut Setup, data: &[u8]) -> Turn {
        let mut buf = vec![0; 64 * 1024];
        let mut total = Turn::default();
        for chunk in data.chunks(16 * 1024) {
            setup.container.write_all(chunk).unwrap();
            let turn = setup.relay.pump(setup.poll.registry(), &mut buf);
            total.dropped += turn.dropped;
            total.error = total.error.or(turn.error);
        }
        total
    }

    fn open_reader(path: &Path) -> File {
        OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NONBLOCK)
            .open(path)
            .unwrap()
    }

    /// Reads what the fifo holds, letting the relay refill it, until `want` bytes came.
    fn read_back(setup: &mut Setup, reader: &mut File, want: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = vec![0; 64 * 1024];
        for _ in 0..10_000 {
            match reader.read(&mut buf) {
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("read: {e}"),
            }
            setup.relay.flush();
            if out.len() >= want {
                break;
            }
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

    #[test]
    fn output_nobody_reads_waits_for_the_next_reader_in_order() {
        let mut setup = setup();
        let data = records(1, 3 * 65536); // 3 MiB: more than the fifo holds
        let turn = write_through(&mut setup, &data);
        assert_eq!((turn.dropped, turn.error), (0, None));
        assert!(!setup.relay.finished(), "the fifo cannot hold it all");
        let mut reader = open_reader(&setup.fifo.clone());
        let got = read_back(&mut setup, &mut reader, data.len());
        assert_eq!(got.len(), data.len());
        assert!(got == data, "the reader got the output out of order");
    }

    #[test]
    fn past_the_limit_output_is_dropped_never_blocking_the_writer() {
        let mut setup = setup();
        let held = fifo_capacity(&setup) + PENDING_LIMIT;
        let data = records(1, (held + (2 << 20)) / 16);
        let turn = write_through(&mut setup, &data);
        assert_eq!(turn.error, None);
        assert_eq!(setup.relay.dropped() as usize, data.len() - held);
        assert!(turn.dropped > 0, "the drop was reported");
        let mut reader = open_reader(&setup.fifo.clone());
        let got = read_back(&mut setup, &mut reader, held);
        assert!(got == data[..held], "what was kept is the start, in order");
    }

    #[test]
    fn a_reader_that_leaves_causes_no_error_and_the_next_one_continues() {
        let mut setup = setup();
        let first = records(1, 1000);
        let mut reader = open_reader(&setup.fifo.clone());
        write_through(&mut setup, &first);
        let got = read_back(&mut setup, &mut reader, first.len());
        assert!(got == first);
        drop(reader);
        let second = records(1001, 1000);
        let turn = write_through(&mut setup, &second);
        assert_eq!((turn.dropped, turn.error), (0, None));
        let mut reader = open_reader(&setup.fifo.clone());
        let got = read_back(&mut setup, &mut reader, second.len());
        assert!(got == second);
    }

    #[test]
    fn the_end_of_the_output_closes_the_fifo_once_it_is_passed_on() {
        let mut setup = setup();
        let data = records(1, 100);
        let mut reader = open_reader(&setup.fifo.clone());
        write_through(&mut setup, &data);
        drop(std::mem::replace(
            &mut setup.container,
            File::open("/dev/null").unwrap(),
        ));
        let mut buf = vec![0; 64];
        let _ = setup.relay.pump(setup.poll.registry(), &mut buf);
        assert!(setup.relay.finished());
        setup.relay.close(setup.poll.registry());
        let mut got = Vec::new();
        reader.read_to_end(&mut got).unwrap();
        assert!(got == data, "everything, then end-of-file");
    }
}
