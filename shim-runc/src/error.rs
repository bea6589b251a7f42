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

    /// What the failure was, read once from the runtime's own message: the one place in tether
    /// where a runtime's text is classified. What a kind means to a caller (a code, an answer) is
    /// the caller's policy.
    pub fn kind(&self) -> FailureKind {
        let Some(message) = self.runtime_message() else {
            return FailureKind::Other;
        };
        let m = message.to_ascii_lowercase();
        // The process's own command, at its exec: runc says `exec: "x": ...`, crun
        // "executable file `x` not found" or "open executable".
        let command = m.contains("exec:") || m.contains("executable");
        let missing = m.contains("not found") || m.contains("no such file");
        if command && missing {
            FailureKind::CommandNotFound
        } else if command
            && (m.contains("permission denied")
                || m.contains("is a directory")
                || m.contains("operation not permitted"))
        {
            FailureKind::CommandNotRunnable
        } else if m.contains("does not exist") || missing {
            FailureKind::ContainerMissing
        } else if m.contains("not running")
            || m.contains("no such process")
            || m.contains("process already finished")
        {
            FailureKind::ProcessFinished
        } else {
            FailureKind::Other
        }
    }
}

/// What a runtime's failure was, as [`Error::kind`] reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// No such container (runc: "container does not exist"; others: "not found", "No such file").
    ContainerMissing,
    /// The process is gone (not running, no such process): containerd's "process already
    /// finished".
    ProcessFinished,
    /// The command to start does not exist (a shell's 127).
    CommandNotFound,
    /// The command exists and cannot be run: a directory, no permission (a shell's 126).
    CommandNotRunnable,
    /// Anything else, the runtime's own message says what.
    Other,
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
        let kinds = [
            ("container not running", FailureKind::ProcessFinished),
            ("kill: no such process", FailureKind::ProcessFinished),
            ("container \"web\" does not exist", FailureKind::ContainerMissing),
            (
                "runc exec failed: unable to start container process: exec: \"nope\": executable file not found in $PATH",
                FailureKind::CommandNotFound,
            ),
            (
                "exec: \"/nope\": stat /nope: no such file or directory",
                FailureKind::CommandNotFound,
            ),
            (
                "executable file `nope` not found in $PATH: No such file or directory",
                FailureKind::CommandNotFound,
            ),
            ("exec: \"/etc\": permission denied", FailureKind::CommandNotRunnable),
            ("exec: \"/etc\": is a directory", FailureKind::CommandNotRunnable),
            (
                "open executable: Operation not permitted",
                FailureKind::CommandNotRunnable,
            ),
            ("cgroup: permission denied", FailureKind::Other),
        ];
        for (message, kind) in kinds {
            assert_eq!(failed(message).kind(), kind, "{message}");
        }
        let timed_out = Error::TimedOut {
            command: "runc start web".into(),
            timeout: std::time::Duration::from_secs(1),
        };
        assert_eq!(timed_out.kind(), FailureKind::Other);
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
