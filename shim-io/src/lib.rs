//! The copying half of a container shim: container stdout and stderr into log files that the
//! kubelet (`kubectl logs`, CRI format) and docker (`docker logs`, json-file format) read back exactly,
//! and stdin into the container, with [`mio`] on one thread.
//!
//! * [`copier`] — the one copier: every stream of a shim's processes, whatever its other end (the
//!   three below), under one number each, with its loop contract.
//! * [`LogSink`] — one log file: formatting ([`LogFormat::Cri`], [`LogFormat::JsonFile`],
//!   [`LogFormat::Raw`]), line framing with bounded memory (a line longer than 16 KiB becomes several
//!   records; a 10 MiB line costs one 16 KiB buffer), rotation by size, reopening, and write failures
//!   that are counted and reported once but never block the container.
//! * [`relay`] — a process's pipes to a client's fifos, files or logging pipes (what containerd
//!   names for a process): the fifo held open from both ends, bounded holding, backpressure while a
//!   reader reads, whole lines dropped (and said in the stream) only for a reader that is gone,
//!   and "delivered" as the condition for announcing an exit. See the module for its loop contract.
//! * [`client`] — a process's output for a client the caller frames (read only while the client
//!   takes it) and the client's input to the process (held up to a bound), for exec and attach.
//! * [`IoEngine`] — the pipes: registered with your [`mio::Registry`] under your tokens; output is
//!   copied on readiness (raw logs with `splice(2)`, zero-copy), stdin with backpressure.
//!   [`IoEngine::drain_output`] copies whatever a pipe holds *now*, so an exit can be recorded only
//!   once the output is in the log.
//!
//! # End of stream
//!
//! A container that exits without a final newline leaves an unterminated line. It is written at EOF as
//! a record that does not end a line: a CRI `P` record (the kubelet appends no newline after `P`
//! content), or a json-file record whose `log` has no trailing `\n`. Both read back as exactly the
//! bytes written.
//!
//! This crate knows nothing of containers, runtimes or doors: it copies bytes between file
//! descriptors it is given, under numbers and [`mio::Token`]s its caller chooses, and tells its
//! caller what happened ([`copier::Notice`]). The supervisor in shim-bin gives those numbers
//! meaning, in shim-core's words.
//!
//! # Example
//!
//! ```
//! use mio::{Events, Poll, Token};
//! use shim_io::{IoEngine, IoEvent, LogFormat, LogSink, SinkOptions, Stream};
//! use std::io::Write;
//!
//! let dir = tempfile::tempdir()?;
//! let log = dir.path().join("ctr.log");
//! let mut poll = Poll::new()?;
//! let mut engine = IoEngine::new();
//! let sink = engine.add_sink(LogSink::open(&log, SinkOptions::new(LogFormat::Cri))?);
//!
//! let (read_end, write_end) = nix::unistd::pipe()?;
//! engine.add_output(poll.registry(), Token(1), read_end, Stream::Stdout, sink)?;
//! let mut writer = std::fs::File::from(write_end);
//! writer.write_all(b"hello\nno newline")?;
//! drop(writer); // EOF
//!
//! let mut events = Events::with_capacity(8);
//! let mut closed = false;
//! while !closed {
//!     for event in engine.work_backlog(poll.registry()) {
//!         closed |= matches!(event, IoEvent::OutputClosed { .. });
//!     }
//!     if closed { break; }
//!     // Never sleep past a backlog or a held-back pipe.
//!     let timeout = match engine.next_deadline() {
//!         _ if engine.has_backlog() => std::time::Duration::ZERO,
//!         Some(at) => at.saturating_duration_since(std::time::Instant::now()),
//!         None => std::time::Duration::from_secs(5),
//!     };
//!     poll.poll(&mut events, Some(timeout))?;
//!     for event in events.iter() {
//!         for io_event in engine.handle(poll.registry(), event.token()).unwrap_or_default() {
//!             closed |= matches!(io_event, IoEvent::OutputClosed { .. });
//!         }
//!     }
//! }
//! let text = std::fs::read_to_string(&log)?;
//! let records: Vec<&str> = text.lines().map(|l| &l[31..]).collect();
//! assert_eq!(records, ["stdout F hello", "stdout P no newline"]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

// `unsafe` is denied but in `sys`: the one ioctl that tells how much a fifo holds.
#![deny(unsafe_code)]

pub mod client;
pub mod copier;
mod decode;
mod encode;
mod engine;
pub mod fdio;
mod framing;
pub mod relay;
mod sink;
mod sys;
mod timestamp;

pub use decode::{DecodedLine, LogDecoder, LogReader, MAX_DECODED_LINE};
pub use encode::{encode_cri, encode_json, Stream};
pub use engine::{IoEngine, IoEvent, SinkId};
pub use framing::{CutRule, LineFramer, Record};
pub use sink::{
    is_log_file, log_file_offset, numbered, LogFormat, LogSink, Rotation, SinkOptions, SinkStats,
    DEFAULT_MAX_RECORD,
};
pub use timestamp::{TimestampFormatter, TIMESTAMP_LEN};
