//! Log files: formatting, rotation, reopening, and surviving write failures.

use crate::encode::{encode_cri, encode_json, Stream};
use crate::framing::{CutRule, LineFramer};
use crate::timestamp::TimestampFormatter;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant, SystemTime};

/// docker's and the kubelet's record size: longer lines are split into chunks of this many bytes.
pub const DEFAULT_MAX_RECORD: usize = 16 * 1024;

/// How often a log that could not be opened is tried again while output keeps coming.
const REOPEN_RETRY: Duration = Duration::from_secs(1);

/// The format of a log file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LogFormat {
    /// The kubelet's CRI format.
    Cri,
    /// docker's json-file format.
    JsonFile,
    /// The bytes as the container wrote them.
    Raw,
}

impl LogFormat {
    /// `cri`, `json-file` or `raw`.
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Cri => "cri",
            LogFormat::JsonFile => "json-file",
            LogFormat::Raw => "raw",
        }
    }
}

impl FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "cri" | "k8s-file" => Ok(LogFormat::Cri),
            "json-file" | "json" => Ok(LogFormat::JsonFile),
            "raw" => Ok(LogFormat::Raw),
            other => Err(format!(
                "unknown log format {other:?} (expected cri, json-file or raw)"
            )),
        }
    }
}

impl std::fmt::Display for LogFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// docker's max-size / max-file: when writing a record would take the log past `max_size`, the log is
/// renamed `log.1` (`log.1` to `log.2`, ...) and a new one started; at most `max_files` files are kept
/// in all. A record is never split across files. Each new file carries where it begins in all that
/// was logged ([`log_file_offset`]), so a reader that finds files gone can say how much it missed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    /// The size that triggers rotation.
    pub max_size: u64,
    /// How many files to keep, the live one included (1: the log is truncated instead).
    pub max_files: u32,
}

/// How a [`LogSink`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SinkOptions {
    /// The format.
    pub format: LogFormat,
    /// The largest record content; longer lines become several records.
    pub max_record: usize,
    /// Rotation, if any.
    pub rotation: Option<Rotation>,
}

impl SinkOptions {
    /// `format` with 16 KiB records and no rotation.
    pub fn new(format: LogFormat) -> Self {
        SinkOptions {
            format,
            max_record: DEFAULT_MAX_RECORD,
            rotation: None,
        }
    }

    /// With rotation.
    pub fn rotation(mut self, rotation: Rotation) -> Self {
        self.rotation = Some(rotation);
        self
    }
}

/// What a sink has done.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SinkStats {
    /// Bytes written to log files (after formatting).
    pub written: u64,
    /// Formatted bytes lost to write failures.
    pub dropped: u64,
    /// Rotations done.
    pub rotations: u64,
    /// Write or open failures seen.
    pub failures: u64,
}

/// One log file in one format, fed with both output streams of a container.
///
/// Writes are plain blocking writes to a regular file (regular files do not support nonblocking
/// I/O). A failing write never blocks or stops the sink: the bytes are counted in
/// [`SinkStats::dropped`], the error is handed out once by [`LogSink::take_error`], and writing goes on
/// with the next output (a log that cannot be reopened is retried once a second).
#[derive(Debug)]
pub struct LogSink {
    path: PathBuf,
    options: SinkOptions,
    file: Option<File>,
    size: u64,
    /// Bytes logged before the open file began (its `user.tether.offset`, where the file system
    /// keeps one): a reader that finds files gone can tell how much it missed.
    start: u64,
    framers: [LineFramer; 2],
    timestamps: TimestampFormatter,
    out: Vec<u8>,
    record_ends: Vec<usize>,
    stats: SinkStats,
    failing: bool,
    unreported: Option<io::Error>,
    /// Bytes dropped in the current failure episode.
    episode_dropped: u64,
    /// A failure episode ended: how many bytes it dropped (not yet taken).
    recovered: Option<u64>,
    last_open_attempt: Option<Instant>,
}

impl LogSink {
    /// Opens (creating it if needed) the log at `path`. An error here means nothing was created.
    pub fn open(path: impl Into<PathBuf>, options: SinkOptions) -> io::Result<Self> {
        let path = path.into();
        let file = open_log(&path, options.format)?;
        let size = file.metadata()?.len();
        let start = crate::sys::log_offset(&file).unwrap_or_else(|| {
            if size == 0 {
                let _ = crate::sys::set_log_offset(&file, 0);
            }
            0
        });
        let cut = match options.format {
            LogFormat::JsonFile => CutRule::CharBoundary,
            _ => CutRule::AnyByte,
        };
        Ok(LogSink {
            framers: [
                LineFramer::new(options.max_record, cut),
                LineFramer::new(options.max_record, cut),
            ],
            path,
            options,
            file: Some(file),
            size,
            start,
            timestamps: TimestampFormatter::new(),
            out: Vec::new(),
            record_ends: Vec::new(),
            stats: SinkStats::default(),
            failing: false,
            unreported: None,
            episode_dropped: 0,
            recovered: None,
            last_open_attempt: None,
        })
    }

    /// The log's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The options it writes with.
    /// Gives back the room a burst of output grew (records waiting to be written, partial
    /// lines), where nothing waits in it; it is taken again when output comes.
    pub fn release_memory(&mut self) {
        if self.out.is_empty() {
            self.out = Vec::new();
            self.record_ends = Vec::new();
        }
        for framer in &mut self.framers {
            framer.release_memory();
        }
    }

    pub fn options(&self) -> SinkOptions {
        self.options
    }

    /// What it has done so far.
    pub fn stats(&self) -> SinkStats {
        self.stats
    }

    /// The current file's size.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Output of `stream` read at `now`.
    pub fn write(&mut self, stream: Stream, bytes: &[u8], now: SystemTime) {
        if self.options.format == LogFormat::Raw {
            self.out.extend_from_slice(bytes);
            self.record_ends.push(self.out.len());
        } else {
            self.encode(stream, now, |framer, emit| framer.push(bytes, emit));
        }
        self.flush_out();
    }

    /// End of `stream`: writes its unterminated last line, if any, as a record that does not end a
    /// line (CRI `P`, json-file without `\n`), so a reader gets back exactly the bytes written.
    pub fn finish(&mut self, stream: Stream, now: SystemTime) {
        if self.options.format != LogFormat::Raw {
            self.encode(stream, now, |framer, emit| framer.finish(emit));
            self.flush_out();
        }
    }

    /// Whether the stream holds an unterminated line not yet written.
    pub fn has_partial(&self, stream: Stream) -> bool {
        self.framers[stream.index()].pending_len() > 0
    }

    /// Closes and opens the log path again (after an external logrotate moved it).
    pub fn reopen(&mut self) -> io::Result<()> {
        let end = self.start + self.size;
        self.file = None;
        let opened = open_log(&self.path, self.options.format).and_then(|file| {
            let size = file.metadata()?.len();
            Ok((file, size))
        });
        match opened {
            Ok((file, size)) => {
                // A new file begins where the last one ended; one already there says where it
                // began, or is the same file opened again.
                self.start = match crate::sys::log_offset(&file) {
                    Some(start) => start,
                    None if size == 0 => {
                        let _ = crate::sys::set_log_offset(&file, end);
                        end
                    }
                    None => self.start,
                };
                self.file = Some(file);
                self.size = size;
                Ok(())
            }
            Err(e) => {
                self.last_open_attempt = Some(Instant::now());
                Err(e)
            }
        }
    }

    /// The first error of the current failure episode, once; None while writes succeed or once it
    /// was taken.
    pub fn take_error(&mut self) -> Option<io::Error> {
        self.unreported.take()
    }

    /// A failure episode that ended since the last call: the bytes it dropped, once.
    pub fn take_recovered(&mut self) -> Option<u64> {
        self.recovered.take()
    }

    /// Copies up to `max` bytes from a pipe into a raw log without passing them through user space.
    /// Returns the bytes moved (0 at EOF), or `Unsupported` when splicing cannot be used for this sink
    /// now (not raw, a log that is failing, or a file system without splice); read and
    /// [`LogSink::write`] then.
    pub fn splice_from(&mut self, pipe: BorrowedFd<'_>, max: usize) -> io::Result<usize> {
        use nix::fcntl::{splice, SpliceFFlags};
        if self.options.format != LogFormat::Raw || self.failing || self.file.is_none() {
            return Err(io::ErrorKind::Unsupported.into());
        }
        let mut len = max;
        if let Some(rotation) = self.options.rotation {
            if self.size >= rotation.max_size {
                self.rotate();
            }
            len = len.min(rotation.max_size.saturating_sub(self.size).max(1) as usize);
        }
        let file = self.file.as_ref().ok_or(io::ErrorKind::Unsupported)?;
        match splice(
            pipe,
            None,
            file.as_fd(),
            None,
            len,
            SpliceFFlags::SPLICE_F_NONBLOCK,
        ) {
            Ok(n) => {
                self.size += n as u64;
                self.stats.written += n as u64;
                Ok(n)
            }
            Err(nix::errno::Errno::EINVAL) => Err(io::ErrorKind::Unsupported.into()),
            Err(e) => Err(e.into()),
        }
    }

    fn encode(
        &mut self,
        stream: Stream,
        now: SystemTime,
        feed: impl FnOnce(&mut LineFramer, &mut dyn FnMut(crate::framing::Record<'_>)),
    ) {
        let timestamp = *self.timestamps.format(now);
        let encoder = match self.options.format {
            LogFormat::Cri => encode_cri,
            _ => encode_json,
        };
        let out = &mut self.out;
        let ends = &mut self.record_ends;
        feed(&mut self.framers[stream.index()], &mut |record| {
            encoder(out, &timestamp, stream, record);
            ends.push(out.len());
        });
    }

    /// Writes the encoded records, rotating between records where the size limit says so.
    fn flush_out(&mut self) {
        if self.out.is_empty() {
            self.record_ends.clear();
            return;
        }
        let out = std::mem::take(&mut self.out);
        let ends = std::mem::take(&mut self.record_ends);
        match self.options.rotation {
            None => self.write_records(&out, &ends, 0),
            Some(rotation) => {
                let mut start = 0;
                let mut previous_end = 0;
                for &end in &ends {
                    let would_be = self.size + (end - start) as u64;
                    if would_be > rotation.max_size && self.size + (previous_end - start) as u64 > 0
                    {
                        self.write_records(&out[start..previous_end], &ends, start);
                        self.rotate();
                        start = previous_end;
                    }
                    previous_end = end;
                }
                self.write_records(&out[start..], &ends, start);
            }
        }
        // Keep the buffers' capacity for the next chunk.
        self.out = out;
        self.out.clear();
        self.record_ends = ends;
        self.record_ends.clear();
    }

    /// Writes `bytes`, whole records that start at `offset` of the buffer `ends` indexes. A short
    /// write (a full disk) is cut back to the last whole record, so the next record never lands
    /// glued to a torn one; what is cut is counted as dropped.
    fn write_records(&mut self, bytes: &[u8], ends: &[usize], offset: usize) {
        let before = self.size;
        let written = self.write_bytes(bytes);
        if written == bytes.len() || self.options.format == LogFormat::Raw {
            return;
        }
        let kept = ends
            .iter()
            .map(|&end| end.saturating_sub(offset))
            .filter(|&end| end <= written)
            .max()
            .unwrap_or(0);
        if kept < written {
            if let Some(file) = &self.file {
                if file.set_len(before + kept as u64).is_ok() {
                    let cut = (written - kept) as u64;
                    self.size -= cut;
                    self.stats.written -= cut;
                    self.stats.dropped += cut;
                    self.episode_dropped += cut;
                }
            }
        }
    }

    /// Writes what it can of `bytes`; returns how much.
    fn write_bytes(&mut self, bytes: &[u8]) -> usize {
        if bytes.is_empty() {
            return 0;
        }
        if self.file.is_none() && !self.retry_open() {
            self.stats.dropped += bytes.len() as u64;
            self.episode_dropped += bytes.len() as u64;
            return 0;
        }
        let Some(file) = self.file.as_mut() else {
            return 0;
        };
        let mut written = 0;
        while written < bytes.len() {
            match file.write(&bytes[written..]) {
                Ok(0) => {
                    self.fail(io::ErrorKind::WriteZero.into());
                    break;
                }
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.fail(e);
                    break;
                }
            }
        }
        self.size += written as u64;
        self.stats.written += written as u64;
        self.stats.dropped += (bytes.len() - written) as u64;
        self.episode_dropped += (bytes.len() - written) as u64;
        if written == bytes.len() && self.failing {
            self.failing = false;
            self.recovered = Some(std::mem::take(&mut self.episode_dropped));
        }
        written
    }

    fn retry_open(&mut self) -> bool {
        if self
            .last_open_attempt
            .is_some_and(|at| at.elapsed() < REOPEN_RETRY)
        {
            return false;
        }
        match self.reopen() {
            Ok(()) => true,
            Err(e) => {
                self.fail(e);
                false
            }
        }
    }

    fn fail(&mut self, error: io::Error) {
        self.stats.failures += 1;
        if !self.failing {
            self.failing = true;
            self.unreported = Some(error);
        }
    }

    fn rotate(&mut self) {
        let Some(rotation) = self.options.rotation else {
            return;
        };
        self.stats.rotations += 1;
        if rotation.max_files <= 1 {
            if let Some(file) = &self.file {
                if let Err(e) = file.set_len(0) {
                    self.fail(e);
                }
            }
            self.size = 0;
            return;
        }
        for n in (1..rotation.max_files - 1).rev() {
            let _ = std::fs::rename(numbered(&self.path, n), numbered(&self.path, n + 1));
        }
        if let Err(e) = std::fs::rename(&self.path, numbered(&self.path, 1)) {
            self.fail(e);
        }
        if let Err(e) = self.reopen() {
            self.fail(e);
        }
    }
}

/// Where a file of a rotated log begins in all that was logged (see [`Rotation`]); None where the
/// file system keeps no user attributes, or the file is not one of a rotation.
pub fn log_file_offset(file: &File) -> Option<u64> {
    crate::sys::log_offset(file)
}

/// `log.N`.
pub fn numbered(path: &Path, n: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

fn open_log(path: &Path, format: LogFormat) -> io::Result<File> {
    let mut options = OpenOptions::new();
    // O_NONBLOCK: a fifo put where the log belongs must not block the daemon in open(2) (regular
    // files and devices ignore the flag); a fifo or socket is then refused (a device such as
    // /dev/null is a log like any other).
    options
        .create(true)
        .mode(0o640)
        .custom_flags(nix::libc::O_CLOEXEC | nix::libc::O_NONBLOCK);
    let mut file = if format == LogFormat::Raw {
        // splice(2) refuses O_APPEND files: write at the end by position instead.
        options.write(true).open(path)?
    } else {
        options.append(true).open(path)?
    };
    if !is_log_file(&file.metadata()?) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file or a device",
        ));
    }
    if format == LogFormat::Raw {
        std::io::Seek::seek(&mut file, std::io::SeekFrom::End(0))?;
    }
    Ok(file)
}

/// A regular file or a device (`/dev/null`): what a log may be. A fifo would block or drop, a
/// socket cannot be opened as a file.
pub fn is_log_file(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::FileTypeExt;
    let kind = meta.file_type();
    kind.is_file() || kind.is_char_device() || kind.is_block_device()
}
