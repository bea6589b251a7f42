//! Errors, and the runtime's own error message read back from its JSON log.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// What went wrong running a runtime subcommand. The message always names the command (`runc create
/// web`), so one line is enough to act on.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The runtime binary does not exist or is not executable.
    #[error("{command}: runtime not found: {}", binary.display())]
    RuntimeNotFound { command: String, binary: PathBuf },
    /// The runtime could not be started.
    #[error("{command}: start {}: {source}", binary.display())]
    Spawn {
        command: String,
        binary: PathBuf,
        source: std::io::Error,
    },
    /// The runtime ran and failed; `message` is its own last error.
    #[error("{command}: {status}: {message}")]
    Failed {
        command: String,
        status: String,
        message: String,
    },
    /// Waiting for the runtime failed.
    #[error("{command}: wait: {source}")]
    Wait {
        command: String,
        source: std::io::Error,
    },
    /// Reading the runtime's output failed.
    #[error("{command}: read output: {source}")]
    Read {
        command: String,
        source: std::io::Error,
    },
    /// The runtime's output was not what the subcommand documents.
    #[error("{command}: unexpected output: {source}")]
    Output {
        command: String,
        source: serde_json::Error,
    },
    /// A `--process` or `--resources` file could not be written.
    #[error("{command}: write {}: {source}", path.display())]
    Scratch {
        command: String,
        path: PathBuf,
        source: std::io::Error,
    },
    /// The runtime ran past its time limit and was killed.
    #[error("{command}: the runtime did not finish within {}s and was killed", timeout.as_secs())]
    TimedOut {
        command: String,
        timeout: std::time::Duration,
    },
}

impl Error {
    /// The runtime's own message when it ran and failed.
    pub fn runtime_message(&self) -> Option<&str> {
        match self {
            Error::Failed { message, .. } => Some(message),
            _ => None,
        }
    }

    /// The runtime said it has no such container (runc: "container does not exist"; other
    /// runtimes: "not found", "No such file").
    pub fn container_missing(&self) -> bool {
        self.runtime_message().is_some_and(|m| {
            let m = m.to_ascii_lowercase();
            m.contains("does not exist") || m.contains("not found") || m.contains("no such file")
        })
    }

    /// The runtime said the process is gone (not running, no such process): what containerd's
    /// shim calls "process already finished".
    pub fn process_finished(&self) -> bool {
        self.runtime_message().is_some_and(|m| {
            let m = m.to_ascii_lowercase();
            m.contains("not running")
                || m.contains("no such process")
                || m.contains("process already finished")
        })
    }

    /// For a process the runtime could not start (`exec`, `run`): the code a shell gives, 127 when
    /// the command does not exist, 126 when it cannot be executed.
    pub fn start_failure_code(&self) -> i32 {
        let message = self.to_string().to_ascii_lowercase();
        if message.contains("permission denied") || message.contains("is a directory") {
            126
        } else if message.contains("not found") || message.contains("no such file") {
            127
        } else {
            126
        }
    }

    /// As the supervisor's error, for a process the runtime was asked to start: it carries the
    /// shell's code ([`Error::start_failure_code`]).
    pub fn as_start_failure(&self) -> shim_core::Error {
        shim_core::Error::new(
            shim_core::ErrorKind::Runtime {
                start_failure: Some(self.start_failure_code()),
            },
            self.to_string(),
        )
    }
}

/// The one place a runtime's failure gets its kind.
impl From<Error> for shim_core::Error {
    fn from(error: Error) -> shim_core::Error {
        if error.process_finished() {
            shim_core::Error::not_found(format!("process already finished: {error}"))
        } else {
            shim_core::Error::runtime(error.to_string())
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The last `error` or `fatal` message in a runtime's JSON log, reading from byte `offset` on (the size
/// the log had before the command ran, so an older failure is never reported for a newer command).
pub fn last_log_error(log: &Path, offset: u64) -> Option<String> {
    // The tail is enough: a failing runtime writes its error last. Bound what is read.
    const TAIL: u64 = 64 * 1024;
    let mut file = std::fs::File::open(log).ok()?;
    let len = file.metadata().ok()?.len();
    let start = offset.max(len.saturating_sub(TAIL));
    file.seek(SeekFrom::Start(start)).ok()?;
    let mut text = String::new();
    file.take(TAIL).read_to_string(&mut text).ok()?;
    text.lines().rev().find_map(error_message)
}

fn error_message(line: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Entry {
        level: String,
        msg: String,
    }
    let entry: Entry = serde_json::from_str(line).ok()?;
    matches!(entry.level.as_str(), "error" | "fatal").then(|| entry.msg.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn failed(message: &str) -> Error {
        Error::Failed {
            command: "runc exec web".into(),
            status: "exit status 1".into(),
            message: message.into(),
        }
    }

    #[test]
    fn runtime_failures_get_their_kind_once() {
        let gone: shim_core::Error = failed("container not running").into();
        assert_eq!(gone.kind, shim_core::ErrorKind::NotFound);
        let other: shim_core::Error = failed("cgroup: permission denied").into();
        assert!(matches!(other.kind, shim_core::ErrorKind::Runtime { .. }));
        assert!(failed("container \"web\" does not exist").container_missing());
        let not_found = failed("exec: \"nope\": executable file not found in $PATH");
        assert_eq!(not_found.start_failure_code(), 127);
        assert_eq!(
            failed("exec: \"/etc\": permission denied").start_failure_code(),
            126
        );
        assert_eq!(
            not_found.as_start_failure().kind,
            shim_core::ErrorKind::Runtime {
                start_failure: Some(127)
            }
        );
    }

    #[test]
    fn reads_the_last_error_after_the_offset() {
        let mut log = tempfile::NamedTempFile::new().unwrap();
        let old =
            "{\"level\":\"error\",\"msg\":\"old failure\",\"time\":\"2026-11-27T00:00:00Z\"}\n";
        log.write_all(old.as_bytes()).unwrap();
        let offset = old.len() as u64;
        assert_eq!(
            last_log_error(log.path(), 0).as_deref(),
            Some("old failure")
        );
        assert_eq!(last_log_error(log.path(), offset), None);
        writeln!(
            log,
            "{{\"level\":\"info\",\"msg\":\"noise\",\"time\":\"x\"}}"
        )
        .unwrap();
        writeln!(
            log,
            "{{\"level\":\"error\",\"msg\":\"container with id exists: web\",\"time\":\"x\"}}"
        )
        .unwrap();
        writeln!(log, "not json at all").unwrap();
        assert_eq!(
            last_log_error(log.path(), offset).as_deref(),
            Some("container with id exists: web")
        );
    }
}
