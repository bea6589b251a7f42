//! The shim daemon's own diagnostics. Under containerd they go to its stderr: the `log` fifo
//! containerd makes in the bundle and copies into its own log, as logfmt lines like containerd's,
//! so they read as part of it. For `tether run` they go to the container's `shim.log`. Writes never
//! block and never fail the caller: while containerd is down nobody reads the fifo and a line is
//! simply lost.

use super::persist::ShimLog;
use std::fmt::Arguments;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// Where the daemon says what it does.
#[derive(Debug, Clone)]
pub struct Diag {
    id: String,
    debug: bool,
    /// `tether run`'s shim.log; none: stderr, in containerd's format.
    file: Option<Arc<Mutex<ShimLog>>>,
}

impl Diag {
    pub fn new(id: &str, debug: bool) -> Diag {
        Diag {
            id: id.to_owned(),
            debug,
            file: None,
        }
    }

    /// Diagnostics into `tether run`'s shim.log, every level.
    pub fn to_file(id: &str, log: ShimLog) -> Diag {
        Diag {
            id: id.to_owned(),
            debug: true,
            file: Some(Arc::new(Mutex::new(log))),
        }
    }

    /// Something containerd's operator should see.
    pub fn info(&self, message: Arguments<'_>) {
        self.write("info", message);
    }

    /// Something that went wrong without failing a request.
    pub fn warn(&self, message: Arguments<'_>) {
        self.write("warning", message);
    }

    /// Request-level detail, with `-debug` only.
    pub fn debug(&self, message: Arguments<'_>) {
        if self.debug {
            self.write("debug", message);
        }
    }

    fn write(&self, level: &str, message: Arguments<'_>) {
        if let Some(file) = &self.file {
            if let Ok(mut log) = file.lock() {
                log.line(message);
            }
            return;
        }
        let message = message
            .to_string()
            .replace('\\', "\\\\")
            .replace('"', "\\\"");
        let line = format!(
            "time=\"{}\" level={level} msg=\"{message}\" id={} runtime=io.containerd.tether.v2\n",
            crate::common::time::rfc3339(SystemTime::now()),
            self.id
        );
        // Unbuffered, one write per line; a failed write only loses the line.
        let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
    }
}
