//! The CLI's error: one line for a person, and the exit code that goes with it.

use std::fmt;

/// A failed command. Exit codes: 1 for a failure, 2 for bad input (clap uses 2 for usage errors too).
#[derive(Debug)]
pub struct Error {
    message: String,
    code: u8,
}

impl Error {
    /// A failure (exit code 1).
    pub fn failed(message: impl Into<String>) -> Self {
        Error {
            message: message.into(),
            code: 1,
        }
    }

    /// Bad input from the caller (exit code 2).
    pub fn invalid(message: impl Into<String>) -> Self {
        Error {
            message: message.into(),
            code: 2,
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
