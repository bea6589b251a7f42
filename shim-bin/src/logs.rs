//! `tether logs`: read a container's log back in its format and print the original output
//! (stdout records to stdout, stderr records to stderr), across rotated files, optionally following.

use crate::client::recorded_state;
use crate::error::{Error, Result};
use shim_core::{ContainerId, StateLayout, Status};
use shim_io::{numbered, LogFormat};
use std::collections::VecDeque;
use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How often `-f` looks for new output.
const FOLLOW_INTERVAL: Duration = Duration::from_millis(100);

#[derive(Clone, Copy, PartialEq, Eq)]
enum Target {
    Stdout,
    Stderr,
}

/// One line of original output (or its unterminated tail), with the time of its first record.
struct Line {
    time: Option<Vec<u8>>,
    target: Target,
    text: Vec<u8>,
}

/// Turns log records back into lines of output.
struct Decoder {
    format: LogFormat,
    partial: [Option<Line>; 2],
}

impl Decoder {
    fn new(format: LogFormat) -> Self {
        Decoder {
            format,
            partial: [None, None],
        }
    }

    /// One record (a line of the log file without its newline).
    fn record(&mut self, record: &[u8], emit: &mut dyn FnMut(Line)) {
        let (time, target, content, ends_line) = match self.format {
            LogFormat::Raw => {
                emit(Line {
                    time: None,
                    target: Target::Stdout,
                    text: [record, b"\n"].concat(),
                });
                return;
            }
            LogFormat::Cri => {
                let mut fields = record.splitn(4, |&b| b == b' ');
                let (Some(time), Some(stream), Some(tag)) =
                    (fields.next(), fields.next(), fields.next())
                else {
                    return;
                };
                let content = fields.next().unwrap_or_default().to_vec();
                let ends_line = tag.split(|&b| b == b':').next() == Some(b"F");
                (time.to_vec(), target_of(stream), content, ends_line)
            }
            LogFormat::JsonFile => {
                #[derive(serde::Deserialize)]
                struct JsonRecord {
                    log: String,
                    stream: String,
                    time: String,
                }
                let Ok(parsed) = serde_json::from_slice::<JsonRecord>(record) else {
                    return;
                };
                let mut content = parsed.log.into_bytes();
                let ends_line = content.last() == Some(&b'\n');
                if ends_line {
                    content.pop();
                }
                (
                    parsed.time.into_bytes(),
                    target_of(parsed.stream.as_bytes()),
                    content,
                    ends_line,
                )
            }
        };
        let slot = &mut self.partial[target as usize];
        let line = slot.get_or_insert_with(|| Line {
            time: Some(time),
            target,
            text: Vec::new(),
        });
        line.text.extend_from_slice(&content);
        if ends_line {
            let mut line = slot.take().expect("just inserted");
            line.text.push(b'\n');
            emit(line);
        }
    }

    /// The end of the log: what is left is an unterminated last line.
    fn finish(&mut self, emit: &mut dyn FnMut(Line)) {
        for slot in &mut self.partial {
            if let Some(line) = slot.take() {
                emit(line);
            }
        }
    }
}

fn target_of(stream: &[u8]) -> Target {
    if stream == b"stderr" {
        Target::Stderr
    } else {
        Target::Stdout
    }
}

/// Reads record lines from a file, keeping an incomplete last line for later.
struct RecordReader {
    file: File,
    carry: Vec<u8>,
    raw: bool,
}

impl RecordReader {
    fn new(file: File, raw: bool) -> Self {
        RecordReader {
            file,
            carry: Vec::new(),
            raw,
        }
    }

    /// Feeds every complete record now in the file to `decoder`; returns whether anything was read.
    fn pump(&mut self, decoder: &mut Decoder, emit: &mut dyn FnMut(Line)) -> std::io::Result<bool> {
        let mut chunk = vec![0u8; 256 * 1024];
        let mut any = false;
        loop {
            let n = match self.file.read(&mut chunk) {
                Ok(0) => return Ok(any),
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            any = true;
            self.carry.extend_from_slice(&chunk[..n]);
            let mut start = 0;
            while let Some(newline) = memchr_newline(&self.carry[start..]) {
                decoder.record(&self.carry[start..start + newline], emit);
                start += newline + 1;
            }
            self.carry.drain(..start);
        }
    }

    /// Raw logs have no records: an unterminated tail is output too.
    fn finish(&mut self, emit: &mut dyn FnMut(Line)) {
        if self.raw && !self.carry.is_empty() {
            emit(Line {
                time: None,
                target: Target::Stdout,
                text: std::mem::take(&mut self.carry),
            });
        }
    }
}

fn memchr_newline(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|&b| b == b'\n')
}

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
        let result = match line.target {
            Target::Stdout => write_line(&mut self.stdout, line, self.timestamps),
            Target::Stderr => {
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

/// Runs `tether logs`.
pub fn logs(
    layout: &StateLayout,
    id: &ContainerId,
    follow: bool,
    tail: Option<usize>,
    timestamps: bool,
) -> Result<u8> {
    let state = recorded_state(layout, id).ok_or_else(|| {
        if layout.container_dir(id).is_dir() {
            Error::failed(format!("container {id}: no recorded state yet"))
        } else {
            Error::failed(format!("no such container: {id}"))
        }
    })?;
    let format: LogFormat = state.log_format.parse().map_err(Error::failed)?;
    if timestamps && format == LogFormat::Raw {
        return Err(Error::invalid(format!(
            "container {id}: its log is raw and carries no timestamps"
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
                let mut reader = RecordReader::new(file, raw);
                reader
                    .pump(&mut decoder, &mut sink)
                    .map_err(|e| Error::failed(format!("read {}: {e}", path.display())))?;
                reader.finish(&mut sink);
            }
        }
        let file = File::open(log_path).map_err(|e| {
            Error::failed(format!("container {id}: log {}: {e}", log_path.display()))
        })?;
        let mut reader = RecordReader::new(file, raw);
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
        follow_log(layout, id, log_path, reader, decoder, &mut printer)?;
    }
    Ok(0)
}

/// Prints new output as it arrives, across rotation, until the container has stopped (or was
/// removed) and everything is printed.
fn follow_log(
    layout: &StateLayout,
    id: &ContainerId,
    path: &Path,
    mut reader: RecordReader,
    mut decoder: Decoder,
    printer: &mut Printer,
) -> Result<u8> {
    let raw = reader.raw;
    let mut inode = reader.file.metadata().map(|m| m.ino()).unwrap_or(0);
    loop {
        let stopped = recorded_state(layout, id).is_none_or(|s| s.status == Status::Stopped);
        let mut emit = |line: Line| printer.print(&line);
        let read_any = reader
            .pump(&mut decoder, &mut emit)
            .map_err(|e| Error::failed(format!("read {}: {e}", path.display())))?;
        // Rotated: the path now names a new file. The old one was read to its end just above.
        if let Ok(meta) = std::fs::metadata(path) {
            if meta.ino() != inode {
                if let Ok(file) = File::open(path) {
                    inode = meta.ino();
                    reader.finish(&mut emit);
                    reader = RecordReader::new(file, raw);
                    continue;
                }
            }
        }
        printer.flush();
        if printer.closed {
            return Ok(0);
        }
        if stopped && !read_any {
            let mut emit = |line: Line| printer.print(&line);
            reader.finish(&mut emit);
            decoder.finish(&mut emit);
            printer.flush();
            return Ok(0);
        }
        if !read_any {
            std::thread::sleep(FOLLOW_INTERVAL);
        }
    }
}
