//! The one error of tether's supervisor: a kind that every door maps to its wire (a ttrpc status
//! code, a protocol error kind, an exit code) and one line for a person.

use std::fmt;

/// What kind of failure, as far as a caller can act on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// No such container or process (or the process already finished).
    NotFound,
    /// The container or exec id is taken.
    AlreadyExists,
    /// The request does not fit the process's phase (start twice, delete while running, ...).
    InvalidState,
    /// The request itself is wrong: malformed, out of bounds, unknown.
    BadRequest,
    /// The runtime failed. `start_failure`: for a process it could not start, the code a shell
    /// gives (126 cannot be executed, 127 not found).
    Runtime { start_failure: Option<i32> },
    /// A bound on what one container may hold was reached (execs, say).
    Exhausted,
    /// Something tether does not do (restoring a checkpoint, say).
    Unsupported,
    /// Something inside tether failed.
    Internal,
}

/// A failure: its kind and one line that names the problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
}

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            kind,
            message: message.into(),
        }
    }

    pub fn not_found(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::NotFound, message)
    }

    pub fn already_exists(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::AlreadyExists, message)
    }

    pub fn invalid_state(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::InvalidState, message)
    }

    pub fn bad_request(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::BadRequest, message)
    }

    pub fn runtime(message: impl Into<String>) -> Error {
        Error::new(
            ErrorKind::Runtime {
                start_failure: None,
            },
            message,
        )
    }

    pub fn exhausted(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Exhausted, message)
    }

    pub fn unsupported(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Unsupported, message)
    }

    pub fn internal(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Internal, message)
    }

    /// The same error with `context: ` in front of its message.
    pub fn context(mut self, context: impl fmt::Display) -> Error {
        self.message = format!("{context}: {}", self.message);
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

/// Result alias of the supervisor's operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;
