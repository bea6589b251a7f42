//! The CLI's error: one line for a person, and the exit code that goes with it.

use std::fmt;

/// The exit code of every failure of tether's own (docker's and podman's too), so it is never
/// confused with a command's: bad input, no such container, a shim that does not answer.
pub const TETHER_FAILED: u8 = 125;

/// A failed command: one line, and [`TETHER_FAILED`].
#[derive(Debug)]
pub struct Error {
    message: String,
    code: u8,
    /// The shim daemon gave no answer (it is stopped, hung, or hung up): what was asked may or
    /// may not have been done.
    unanswered: bool,
}

impl Error {
    /// A failure.
    pub fn failed(message: impl Into<String>) -> Self {
        Error {
            message: message.into(),
            code: TETHER_FAILED,
            unanswered: false,
        }
    }

    /// The shim daemon did not answer.
    pub fn unanswered(message: impl Into<String>) -> Self {
        Error {
            unanswered: true,
            ..Error::failed(message)
        }
    }

    /// Whether the shim daemon did not answer (see [`Error::unanswered`]).
    pub fn is_unanswered(&self) -> bool {
        self.unanswered
    }

    /// Bad input from the caller (the same exit code: docker and podman do not tell them apart).
    pub fn invalid(message: impl Into<String>) -> Self {
        Error::failed(message)
    }

    /// A failure that exits with `code` (126, 127: a command that could not be started).
    pub fn with_code(message: impl Into<String>, code: u8) -> Self {
        Error {
            message: message.into(),
            code,
            unanswered: false,
        }
    }

    /// The process exit code.
    pub fn exit_code(&self) -> u8 {
        self.code
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Always one line, whatever a lower layer put in the message.
        let one_line = self.message.replace('\n', " ");
        f.write_str(one_line.trim())
    }
}

/// Result alias for commands.
pub type Result<T, E = Error> = std::result::Result<T, E>;
