//! Where a process's output goes, and where its input comes from: what a door asked for, opened.

use mio::Token;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// Client fifos are enlarged to this (the default 64 KiB fills in moments).
const FIFO_SIZE: i32 = 1 << 20;

/// Where one output goes. Every kind is written by the same pump ([`copier`](crate::copier)); what
/// differs is how a read is passed on and when reading waits.
#[derive(Debug)]
pub enum Destination {
    /// A fifo, held open for reading too so writing never fails for want of a reader (none only
    /// when it could not be opened again after a look for other readers). Output is held, bounded,
    /// while it is full ([`relay`](crate::relay)).
    Fifo { writer: File, reader: Option<File> },
    /// A regular file (`file://` log URIs) or anything else that is not a fifo.
    File(File),
    /// A pipe to a logging binary (`binary://`), held like a fifo.
    Pipe(File),
    /// The log set with [`Copier::log_to`](crate::copier::Copier::log_to), in its format: spliced
    /// when raw, and read in fewer, larger turns while the output keeps coming.
    Log,
    /// A client's frames, under the caller's token for it: read only while the client takes them.
    Client(Token),
    /// Nobody wants it (the client asked for nothing, or is gone): read and dropped.
    Discard,
}

impl Destination {
    /// Opens the destination containerd named: a fifo path, or a `file://` URI (created, appended
    /// to). `""` means the output is not wanted.
    pub fn open(uri: &str) -> io::Result<Destination> {
        if uri.is_empty() {
            return Ok(Destination::Discard);
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
            return Ok(Destination::File(file));
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
            return Ok(Destination::File(file));
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
        Ok(Destination::Fifo {
            writer,
            reader: Some(reader),
        })
    }

    /// Whether output is held for it while it is full: a fifo, file or pipe.
    pub fn is_relayed(&self) -> bool {
        self.writer_ref().is_some()
    }

    fn writer_ref(&self) -> Option<&File> {
        match self {
            Destination::Fifo { writer, .. } => Some(writer),
            Destination::File(file) | Destination::Pipe(file) => Some(file),
            _ => None,
        }
    }

    /// The file written, for a fifo, file or pipe.
    pub(crate) fn writer(&mut self) -> Option<&mut File> {
        match self {
            Destination::Fifo { writer, .. } => Some(writer),
            Destination::File(file) | Destination::Pipe(file) => Some(file),
            _ => None,
        }
    }

    /// Bytes written and not read yet, for fifos and pipes (`FIONREAD` works on either end).
    pub(crate) fn queued(&self) -> Option<usize> {
        crate::sys::queued_bytes(self.pollable()?)
    }

    /// Whether someone other than tether has the fifo (or the logging binary's pipe) open to read.
    /// A pipe with no reader polls POLLERR on its write end, so tether's own read end of a fifo is
    /// closed for the look, and opened again through `/proc/self/fd` (the same fifo, even when its
    /// path is gone). What the fifo holds stays: tether's write end keeps it.
    pub(crate) fn has_reader(&mut self) -> bool {
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
            _ => true,
        }
    }

    /// The writer, when it can be full (fifos and pipes): written nonblocking, and polled.
    pub(crate) fn pollable(&self) -> Option<&File> {
        match self {
            Destination::Fifo { writer, .. } | Destination::Pipe(writer) => Some(writer),
            _ => None,
        }
    }
}

/// Where a process's input comes from.
#[derive(Debug)]
pub enum InputFrom {
    /// A client's fifo (see [`open_input_fifo`]).
    Fifo(File),
    /// A client's frames, handed over with
    /// [`Copier::client_input`](crate::copier::Copier::client_input).
    Client,
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
