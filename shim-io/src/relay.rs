//! Output for a fifo, file or logging pipe (what containerd names for a process): what is held
//! while the destination is full, and when a process's output counts as delivered.
//!
//! The container only ever writes to the shim's pipes; the [`copier`](crate::copier) passes what
//! it reads into the client's fifo, which tether holds open from both ends: a client (or
//! containerd) that goes away never causes EPIPE, and the data waits in the fifo for the next
//! reader.
//!
//! What is held is bounded, and what happens at the bound depends on the reader:
//!
//! - **A reader that reads** (the fifo's level falls, or it takes what is held) sets the pace: when
//!   the fifo is full and [`PENDING_LIMIT`] is held, the copier stops reading the container's pipe,
//!   and the container blocks on its full pipe until the reader catches up (backpressure, as with
//!   runc's shim). Nothing is lost.
//! - **A reader that is gone** (nothing taken for [`READER_GONE_AFTER`] while full, say containerd
//!   is restarting) must not stop the container: output is dropped, whole lines only, counted,
//!   and when a reader takes output again one record goes into the stream itself,
//!   `[tether: N bytes of stdout dropped: no reader]`, before the output that follows. The shim's
//!   log says when an episode starts and ends.
//!
//! A process's exit is published only once its output is delivered ([`Hold::delivered`]): the
//! pipe reached end-of-file, nothing is held, and the fifo was read empty (`FIONREAD`), or its
//! reader stalled for [`DELIVERY_GRACE`], or nobody but tether has the fifo open to read (what is
//! left waits there for the next reader; the exit need not). containerd 1.6 closes its fifo
//! readers as soon as it handles an exit (`task.Delete` closes the IO before it waits for it):
//! whatever was still in the fifo then would be lost. For the same reason the copy keeps its end
//! of the fifo open until the fifo is read empty.

use crate::destination::Destination;
use crate::fdio::write_some;
use crate::output::Turn;
use std::collections::VecDeque;
use std::io;
use std::time::{Duration, Instant};

/// Output held in memory per stream once the client's fifo is full.
pub const PENDING_LIMIT: usize = 8 << 20;
/// A full destination whose reader took nothing for this long has no reader: output is dropped
/// instead of blocking the container.
pub const READER_GONE_AFTER: Duration = Duration::from_secs(5);
/// How long an exit waits for a reader that stopped taking the last of a process's output.
pub const DELIVERY_GRACE: Duration = Duration::from_secs(2);
/// Held-output capacity kept after a burst drained (more is given back).
const SHRINK_ABOVE: usize = 256 << 10;

/// Output being dropped because nobody reads it.
#[derive(Debug)]
struct DropEpisode {
    bytes: u64,
    /// The last byte dropped was not a newline: keep dropping up to the end of that line.
    mid_line: bool,
    /// A reader took output again: end the episode at the next line boundary.
    reader_back: bool,
}

/// What one output holds for its fifo, file or pipe, and what it knows of the reader.
#[derive(Debug)]
pub(crate) struct Hold {
    /// `stdout`, `stderr` or `terminal`, for the record that says output was dropped.
    label: &'static str,
    pending: VecDeque<u8>,
    /// Bytes in the fifo (or logger pipe) at the last look; a fall means the reader read.
    fifo_level: usize,
    /// The last time the reader took output (or the output was added).
    last_progress: Instant,
    /// Since when all that may be held is held, waiting for the reader.
    blocked_since: Option<Instant>,
    episode: Option<DropEpisode>,
    dropped: u64,
    failed: bool,
}

impl Hold {
    pub(crate) fn new(label: &'static str) -> Hold {
        Hold {
            label,
            pending: VecDeque::new(),
            fifo_level: 0,
            last_progress: Instant::now(),
            blocked_since: None,
            episode: None,
            dropped: 0,
            failed: false,
        }
    }

    /// Nothing is held.
    pub(crate) fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Bytes dropped so far (no reader, or a failed destination).
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped
    }

    /// When to look again without an event: a blocked output becomes a dropping one after
    /// [`READER_GONE_AFTER`].
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.blocked_since
            .and_then(|since| since.checked_add(READER_GONE_AFTER))
    }

    /// Whether the source may be read now: not while all that may be held is held and the reader
    /// is still there (backpressure). A reader gone for [`READER_GONE_AFTER`] starts a drop
    /// episode instead.
    pub(crate) fn room(&mut self, now: Instant, turn: &mut Turn) -> bool {
        if self.episode.is_some() || self.pending.len() < PENDING_LIMIT {
            return true;
        }
        let since = *self.blocked_since.get_or_insert(now);
        if now.saturating_duration_since(since) < READER_GONE_AFTER {
            return false; // the container waits for the reader
        }
        self.start_episode();
        turn.dropping = true;
        true
    }

    /// The output ended (or its source was closed whatever it held): a drop episode ends with it.
    /// Its record goes after what is held, for the next reader, and the bytes it dropped are
    /// returned.
    pub(crate) fn end(&mut self) -> Option<u64> {
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
            self.label
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

    /// Passes `data`, just read, on to `dest`, holding what it does not take now.
    pub(crate) fn pass_on(&mut self, dest: &mut Destination, data: &[u8], turn: &mut Turn) {
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
            let Some(writer) = dest.writer() else {
                return;
            };
            match write_some(writer, rest) {
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
    fn observe_reader(&mut self, dest: &Destination, now: Instant) {
        let Some(level) = dest.queued() else {
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

    /// Writes what is held, as far as `dest` takes it.
    pub(crate) fn flush(&mut self, dest: &mut Destination, now: Instant, turn: &mut Turn) {
        self.observe_reader(dest, now);
        let held = self.pending.len();
        let Some(writer) = dest.writer() else {
            self.pending.clear();
            return;
        };
        while !self.pending.is_empty() {
            let (front, _) = self.pending.as_slices();
            match write_some(writer, front) {
                Ok(0) => break,
                Ok(n) => {
                    self.pending.drain(..n);
                }
                Err(e) => {
                    let lost = self.pending.len();
                    self.pending.clear();
                    self.fail(e, lost, turn);
                }
            }
        }
        if self.pending.len() < held {
            // The fifo had room for held output: its reader made it.
            self.reader_took(now);
        }
        self.fifo_level = dest.queued().unwrap_or(0);
        // A burst held while nobody read is not kept resident once it is passed on.
        if self.pending.is_empty() && self.pending.capacity() > SHRINK_ABOVE {
            self.pending = VecDeque::new();
        }
    }

    /// Nothing is held and the fifo was read empty: closing now gives the reader its end-of-file
    /// and loses nothing. (While the fifo holds output, tether keeps it open: the output waits for
    /// the next reader, and the copy is there to tell when it is read.)
    pub(crate) fn read_empty(&mut self, dest: &Destination) -> bool {
        self.pending.is_empty() && {
            self.observe_reader(dest, Instant::now());
            self.fifo_level == 0
        }
    }

    /// The output, ended, reached its reader: nothing is held and the fifo was read empty — or
    /// the reader stalled for [`DELIVERY_GRACE`], or there is no reader at all (what is left waits
    /// for the next reader). `since` is when the process exited: the stall counts from then at the
    /// earliest.
    pub(crate) fn delivered(
        &mut self,
        dest: &mut Destination,
        now: Instant,
        since: Instant,
    ) -> bool {
        self.observe_reader(dest, now);
        if self.pending.is_empty() && self.fifo_level == 0 {
            return true;
        }
        now.saturating_duration_since(self.last_progress.max(since)) >= DELIVERY_GRACE
            || !dest.has_reader()
    }

    /// Forgets what is held (the copy is closed).
    pub(crate) fn clear(&mut self) {
        self.pending = VecDeque::new();
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::destination::{open_input_fifo, InputFrom};
    use crate::fdio::set_nonblocking;
    use crate::input::Input;
    use crate::output::{Cx, Output, Reach};
    use mio::Token;
    use std::fs::{File, OpenOptions};
    use std::io::{Read, Write};
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    use std::path::Path;

    /// A client's fifo with tether's copy writing into it from a pipe.
    struct Setup {
        _dir: tempfile::TempDir,
        fifo: std::path::PathBuf,
        poll: mio::Poll,
        output: Output,
        container: File,
    }

    impl Setup {
        /// One turn of the pump at `now`.
        fn pump_at(&mut self, now: Instant) -> Turn {
            let mut buf = Vec::new();
            let mut notices = Vec::new();
            let mut cx = Cx {
                registry: self.poll.registry(),
                buf: &mut buf,
                log: None,
                frames: None,
                notices: &mut notices,
                now,
                reach: Reach::Turn,
            };
            self.output.pump(&mut cx)
        }
    }

    impl Turn {
        fn merge(&mut self, other: Turn) {
            self.more |= other.more;
            self.dropping |= other.dropping;
            self.recovered = self.recovered.or(other.recovered);
            self.error = self.error.take().or(other.error);
        }
    }

    fn setup() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("stdout");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let destination = Destination::open(fifo.to_str().unwrap()).unwrap();
        let (read_end, write_end) = nix::unistd::pipe().unwrap();
        let poll = mio::Poll::new().unwrap();
        let output = Output::new(
            poll.registry(),
            read_end,
            destination,
            (Token(0), Token(1)),
            "stdout",
            "test",
        )
        .unwrap();
        let container = File::from(write_end);
        set_nonblocking(&container).unwrap();
        Setup {
            _dir: dir,
            fifo,
            poll,
            output,
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
                    total.merge(setup.pump_at(now));
                    match write(setup, written) {
                        Some(n) => n,
                        None => break, // the relay does not read: the container is held back
                    }
                }
            };
            written += n;
            total.merge(setup.pump_at(now));
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
            setup.pump_at(now);
        }
        out
    }

    fn fifo_capacity(setup: &Setup) -> usize {
        let writer = match &setup.output.to {
            Destination::Fifo { writer, .. } => writer,
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
        assert!(!setup.output.finished(), "the fifo cannot hold it all");
        let mut reader = open_reader(&setup.fifo.clone());
        let got = read_back(&mut setup, &mut reader, now);
        assert!(got == data, "the reader got the output out of order");
        assert_eq!(setup.output.dropped(), 0);
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
            setup.pump_at(at);
            if got.len() == data.len() {
                break;
            }
        }
        assert_eq!(setup.output.dropped(), 0);
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
            setup.output.dropped(),
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
        assert!(setup.output.dropped() > 0);
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
        assert_eq!(setup.output.dropped() as usize, dropped_lines * 16);
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
        setup.pump_at(now);
        assert!(setup.output.finished(), "nothing held");
        assert!(
            !setup.output.delivered(now, now),
            "the fifo is not read yet"
        );
        let got = read_back(&mut setup, &mut reader, now);
        assert!(got == data);
        assert!(setup.output.delivered(now, now));
    }

    #[test]
    fn delivery_gives_up_on_a_reader_that_stalls() {
        let mut setup = setup();
        let now = Instant::now();
        let _stalled = open_reader(&setup.fifo.clone());
        write_through(&mut setup, &records(1, 100), now);
        close_container(&mut setup);
        setup.pump_at(now);
        let exited = now + Duration::from_secs(1);
        assert!(!setup.output.delivered(exited + DELIVERY_GRACE / 2, exited));
        assert!(setup.output.delivered(exited + DELIVERY_GRACE, exited));
    }

    #[test]
    fn an_exit_does_not_wait_for_a_fifo_nobody_has_open_and_its_output_waits_there() {
        let mut setup = setup();
        let now = Instant::now();
        let data = records(1, 100);
        write_through(&mut setup, &data, now);
        close_container(&mut setup);
        setup.pump_at(now);
        assert!(setup.output.delivered(now, now), "nobody reads: at once");
        assert!(!setup.output.done(), "the fifo still holds the output");
        let mut reader = open_reader(&setup.fifo.clone());
        assert!(read_back(&mut setup, &mut reader, now) == data);
        assert!(setup.output.done(), "read empty");
    }

    #[test]
    fn a_reader_that_made_room_does_not_make_the_fifo_closable_before_it_is_read_empty() {
        let mut setup = setup();
        let now = Instant::now();
        let mut reader = open_reader(&setup.fifo.clone());
        let capacity = fifo_capacity(&setup);
        let data = records(1, (capacity + (32 << 10)) / 16);
        write_through(&mut setup, &data, now);
        let mut got = vec![0; 64 * 1024];
        let n = reader.read(&mut got).unwrap();
        got.truncate(n);
        close_container(&mut setup);
        setup.pump_at(now);
        // Room was made, held output went on; what the fifo holds is not read yet.
        assert!(setup.output.finished(), "nothing held any more");
        assert!(!setup.output.done(), "the fifo is not read empty");
        assert!(!setup.output.delivered(now, now), "its reader reads on");
        got.extend(read_back(&mut setup, &mut reader, now));
        assert!(got == data);
        assert!(setup.output.delivered(now, now));
        assert!(setup.output.done());
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
        let turn = setup.pump_at(later);
        let dropped = setup.output.dropped();
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
        let mut input = Input::new(InputFrom::Fifo(source), File::from(our_end), false).unwrap();
        input.register(poll.registry(), Token(0), Token(1)).unwrap();
        // The client writes everything and asks for CloseIO before the relay read any of it.
        let data = records(1, 1000);
        let mut client = OpenOptions::new().write(true).open(&fifo).unwrap();
        client.write_all(&data).unwrap();
        drop(client);
        input.end(poll.registry(), &mut Vec::new());
        assert!(
            input.is_closed(),
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
        setup.pump_at(Instant::now());
        assert!(setup.output.finished());
        setup.output.close(setup.poll.registry());
        let mut got = Vec::new();
        reader.read_to_end(&mut got).unwrap();
        assert!(got == data, "everything, then end-of-file");
    }
}
