//! The copying half of a container shim: container stdout and stderr into log files that the
//! kubelet (`kubectl logs`, CRI format) and docker (`docker logs`, json-file format) read back exactly,
//! and stdin into the container, with [`mio`] on one thread.
//!
//! * [`copier`] — the one copier: every stream of a shim's processes, under one number each,
//!   whatever its [`Destination`], with its loop contract.
//! * [`output`] — the one output pump: one read loop, one end-of-stream rule, one buffer and one
//!   budget per turn, whatever the destination: a fifo, file or logging pipe (what containerd
//!   names for a process), the log, a client's frames, or nowhere.
//! * [`relay`] — what is held for a fifo, file or pipe while it is full: backpressure while a
//!   reader reads, whole lines dropped (and said in the stream) only for a reader that is gone,
//!   and "delivered" as the condition for announcing an exit.
//! * [`LogSink`] — one log file: formatting ([`LogFormat::Cri`], [`LogFormat::JsonFile`],
//!   [`LogFormat::Raw`], written with `splice(2)`), line framing with bounded memory (a line longer
//!   than 16 KiB becomes several records; a 10 MiB line costs one 16 KiB buffer), rotation by
//!   size, reopening, and write failures that are counted and reported once but never block the
//!   container.
//! * [`client`] — a process's output for clients the caller frames (exec and attach).
//! * [`input`] — the one input path, from a client's fifo or frames, held up to a bound.
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
//! meaning, in shim-core's words. The [`copier`] module shows a whole copy.

// `unsafe` is denied but in `sys`: the one ioctl that tells how much a fifo holds.
#![deny(unsafe_code)]

pub mod client;
pub mod copier;
mod decode;
mod destination;
mod encode;
pub mod fdio;
mod framing;
pub mod input;
pub mod output;
pub mod relay;
mod sink;
mod sys;
mod timestamp;

pub use decode::{DecodedLine, LogDecoder, LogReader, MAX_DECODED_LINE};
pub use destination::{open_input_fifo, Destination, InputFrom};
pub use encode::{encode_cri, encode_json, Stream};
pub use framing::{CutRule, LineFramer, Record};
pub use sink::{
    is_log_file, log_file_offset, numbered, LogFormat, LogSink, Rotation, SinkOptions, SinkStats,
    DEFAULT_MAX_RECORD,
};
pub use timestamp::{TimestampFormatter, TIMESTAMP_LEN};
