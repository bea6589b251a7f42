//! `tether logs`: read a container's log back in its format and print the original output
//! (stdout records to stdout, stderr records to stderr), across rotated files, optionally following.

use crate::cli::client::recorded_state;
use crate::cli::error::{Error, Result};
use shim_core::{ContainerId, StateLayout, Status};
use shim_io::{numbered, DecodedLine, LogDecoder, LogFormat, LogReader, Stream};
use std::collections::VecDeque;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// How often `-f` looks for new output where inotify is not to be had.
const FOLLOW_INTERVAL: Duration = Duration::from_millis(100);
/// How often `-f` looks at the container's state while its log is quiet.
const FOLLOW_TICK: Duration = Duration::from_millis(500);

type Line = DecodedLine;
type Decoder = LogDecoder;

/// Prints lines, honouring `--timestamps`; a closed stdout (`| head`) ends quietly.
struct Printer {
    timestamps: bool,
    stdout: std::io::BufWriter<std::io::Stdout>,
    stderr: std::io::Stderr,
    closed: bool,
}

impl Printer {
    fn print(&mut self, line: &Line) {
        if self.closed {
            return;
        }
        let result = match line.stream {
            Stream::Stdout => write_line(&mut self.stdout, line, self.timestamps),
            Stream::Stderr => {
                let _ = self.stdout.flush();
                write_line(&mut self.stderr, line, self.timestamps)
            }
        };
        if result.is_err() {
            self.closed = true;
        }
    }

    fn flush(&mut self) {
        if self.stdout.flush().is_err() {
            self.closed = true;
        }
    }
}

fn write_line(out: &mut dyn Write, line: &Line, timestamps: bool) -> std::io::Result<()> {
    if timestamps {
        if let Some(time) = &line.time {
            out.write_all(time)?;
            out.write_all(b" ")?;
        }
    }
    out.write_all(&line.text)
}

/// The log's files, oldest first: `log.N` ... `log.1`, `log`.
fn log_files(log: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = (1..=1000)
        .map(|n| numbered(log, n))
        .take_while(|p| p.exists())
        .collect();
    files.reverse();
    files.push(log.to_owned());
    files
}

/// What `tether logs` was asked for.
#[derive(Debug, Clone, Default)]
pub struct LogsOptions {
    pub follow: bool,
    /// Only the last N lines (of those in the time window).
    pub tail: Option<usize>,
    /// Only lines logged at or after this time.
    pub since: Option<SystemTime>,
    /// Only lines logged before this time (following stops there).
    pub until: Option<SystemTime>,
    pub timestamps: bool,
}

/// Keeps the lines of the time window `--since` .. `--until`.
#[derive(Debug, Clone, Copy)]
struct Window {
    since: Option<SystemTime>,
    until: Option<SystemTime>,
}

impl Window {
    fn is_set(&self) -> bool {
        self.since.is_some() || self.until.is_some()
    }

    /// Whether a line logged at `time` is in it (a line without a readable time is kept).
    fn holds(&self, time: Option<&[u8]>) -> bool {
        let Some(at) = time
            .and_then(|t| std::str::from_utf8(t).ok())
            .and_then(crate::common::units::parse_rfc3339)
        else {
            return true;
        };
        self.since.is_none_or(|since| at >= since) && self.until.is_none_or(|until| at < until)
    }
}

/// Runs `tether logs`.
pub fn logs(layout: &StateLayout, id: &ContainerId, options: &LogsOptions) -> Result<u8> {
    let LogsOptions {
        follow,
        tail,
        timestamps,
        ..
    } = *options;
    let window = Window {
        since: options.since,
        until: options.until,
    };
    // Nothing logged after --until is wanted: there is nothing to follow past it.
    let follow = follow && options.until.is_none_or(|until| until > SystemTime::now());
    let state = recorded_state(layout, id).ok_or_else(|| {
        if layout.container_dir(id).is_dir() {
            Error::failed(format!("container {id}: no recorded state yet"))
        } else {
            Error::failed(format!("no such container: {id}"))
        }
    })?;
    let format: LogFormat = state.log_format.parse().map_err(Error::failed)?;
    if (timestamps || window.is_set()) && format == LogFormat::Raw {
        return Err(Error::invalid(format!(
            "container {id}: its log is raw and carries no timestamps (--timestamps, --since and --until need cri or json-file)"
        )));
    }
    let mut printer = Printer {
        timestamps,
        stdout: std::io::BufWriter::new(std::io::stdout()),
        stderr: std::io::stderr(),
        closed: false,
    };
    let mut decoder = Decoder::new(format);
    let raw = format == LogFormat::Raw;
    let files = log_files(&state.log_path);
    let (history, current) = files.split_at(files.len() - 1);
    let log_path = &current[0];
    let mut kept: VecDeque<Line> = VecDeque::new();
    let reader = {
        let mut sink = |line: Line| match tail {
            _ if !window.holds(line.time.as_deref()) => {}
            Some(n) => {
                kept.push_back(line);
                if kept.len() > n {
                    kept.pop_front();
                }
            }
            None => printer.print(&line),
        };
        for path in history {
            if let Ok(file) = File::open(path) {
                let mut reader = LogReader::new(file, raw);
                reader
                    .pump(&mut decoder, &mut sink)
                    .map_err(|e| Error::failed(format!("read {}: {e}", path.display())))?;
                reader.finish(&mut sink);
            }
        }
        let file = File::open(log_path).map_err(|e| {
            Error::failed(format!("container {id}: log {}: {e}", log_path.display()))
        })?;
        let mut reader = LogReader::new(file, raw);
        reader
            .pump(&mut decoder, &mut sink)
            .map_err(|e| Error::failed(format!("read {}: {e}", log_path.display())))?;
        if !follow {
            reader.finish(&mut sink);
            decoder.finish(&mut sink);
        }
        reader
    };
    for line in kept.drain(..) {
        printer.print(&line);
    }
    printer.flush();
    if follow && !printer.closed {
        follow_log(layout, id, log_path, reader, decoder, &mut printer, window)?;
    }
    Ok(0)
}

/// Prints new output as it arrives, across rotation, until the container has stopped (or was
/// removed, or its daemon died) and everything is printed.
///
/// Rotation renames `log` to `log.1`, `log.1` to `log.2`, …, so a burst can rotate several times
/// between two looks. The open file is read to its end, then the one rotated after it, found by
/// the open file's inode (which cannot be reused while it is open; a deleted file's can, at once:
/// remembering the inodes read made the follower skip or stall on a new log given an old number).
/// When retention deleted the open file, the oldest file left follows it, and the follower says
/// on stderr that output may have been rotated away unread. inotify on the log's directory wakes
/// the loop; a slow tick remains for the container's state.
fn follow_log(
    layout: &StateLayout,
    id: &ContainerId,
    path: &Path,
    mut reader: LogReader,
    mut decoder: Decoder,
    printer: &mut Printer,
    window: Window,
) -> Result<u8> {
    let raw = reader.is_raw();
    let watch = LogWatch::new(path);
    loop {
        let stopped = recorded_state(layout, id).is_none_or(|s| s.status == Status::Stopped);
        let daemon_gone = !stopped
            && crate::cli::client::daemon_process(layout, id)
                == crate::cli::client::DaemonProcess::Gone;
        let mut emit = |line: Line| {
            if window.holds(line.time.as_deref()) {
                printer.print(&line)
            }
        };
        let read_any = reader
            .pump(&mut decoder, &mut emit)
            .map_err(|e| Error::failed(format!("read {}: {e}", path.display())))?;
        if !read_any {
            // At the end of the open file: move on if it was rotated away.
            if let Some((file, skipped)) = next_file(path, reader.file()) {
                reader.finish(&mut emit);
                if skipped {
                    printer.flush();
                    say_missed(id, reader.file(), &file, log_files(path).len());
                }
                reader = LogReader::new(file, raw);
                continue;
            }
        }
        printer.flush();
        if printer.closed {
            return Ok(0);
        }
        if (stopped || daemon_gone) && !read_any {
            let mut emit = |line: Line| {
                if window.holds(line.time.as_deref()) {
                    printer.print(&line)
                }
            };
            reader.finish(&mut emit);
            decoder.finish(&mut emit);
            printer.flush();
            if daemon_gone {
                return Err(crate::cli::client::dead_daemon(layout, id));
            }
            return Ok(0);
        }
        if !read_any {
            watch.wait(FOLLOW_TICK);
        }
    }
}

/// Says on stderr what retention deleted between the file read to its end (`done`) and the oldest
/// file left (`next`): the bytes, where the files say where they begin, else that some may be gone.
fn say_missed(id: &ContainerId, done: &File, next: &File, kept: usize) {
    let end_of_done = shim_io::log_file_offset(done)
        .unwrap_or(0)
        .checked_add(done.metadata().map_or(0, |m| m.len()));
    match (end_of_done, shim_io::log_file_offset(next)) {
        (Some(end), Some(start)) if start > end => eprintln!(
            "tether: {id}: {} bytes of the log were rotated away before they could be read (it keeps {kept} files)",
            start - end
        ),
        (Some(_), Some(_)) => {}
        _ => eprintln!(
            "tether: {id}: output may have been rotated away before it could be read (the log keeps {kept} files)"
        ),
    }
}

/// The file to read after `current` once it is no longer the live log: the one rotated after it,
/// and whether files may have been skipped (retention deleted `current`, so the oldest left is
/// taken). None while `current` is live, or while a rotation is half done (`current` is linked
/// but not listed yet: the next look finds it).
fn next_file(log: &Path, current: &File) -> Option<(File, bool)> {
    let meta = current.metadata().ok()?;
    if std::fs::metadata(log).ok()?.ino() == meta.ino() {
        return None;
    }
    let mut files = log_files(log).into_iter().filter_map(|path| {
        let file = File::open(path).ok()?;
        let inode = file.metadata().ok()?.ino();
        Some((file, inode))
    });
    if meta.nlink() == 0 {
        return files.next().map(|(file, _)| (file, true));
    }
    files.find(|(_, inode)| *inode == meta.ino())?;
    files.next().map(|(file, _)| (file, false))
}

/// Wakes `logs -f` when the log's directory changes; without inotify, a plain tick.
struct LogWatch {
    inotify: Option<nix::sys::inotify::Inotify>,
}

impl LogWatch {
    fn new(log: &Path) -> LogWatch {
        use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
        let dir = log
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let inotify = Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK)
            .ok()
            .filter(|inotify| {
                let flags = AddWatchFlags::IN_MODIFY
                    | AddWatchFlags::IN_CREATE
                    | AddWatchFlags::IN_MOVED_TO
                    | AddWatchFlags::IN_MOVED_FROM
                    | AddWatchFlags::IN_CLOSE_WRITE;
                inotify.add_watch(dir, flags).is_ok()
            });
        LogWatch { inotify }
    }

    /// Waits for a change, or `tick` at most.
    fn wait(&self, tick: Duration) {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        use std::os::fd::AsFd;
        let Some(inotify) = &self.inotify else {
            std::thread::sleep(FOLLOW_INTERVAL);
            return;
        };
        let timeout = PollTimeout::try_from(tick).unwrap_or(PollTimeout::MAX);
        let mut fds = [PollFd::new(inotify.as_fd(), PollFlags::POLLIN)];
        let _ = poll(&mut fds, timeout);
        while let Ok(events) = inotify.read_events() {
            if events.is_empty() {
                break;
            }
        }
    }
}
