//! Which process of a container: its init, or one of its execs by id.

use crate::error::Error;
use std::fmt;

/// An exec's id: 1 to [`ExecId::MAX_LEN`] bytes, no NUL or control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ExecId(String);

impl ExecId {
    /// The longest exec id taken (containerd's are 64 hex digits; tether's own are `exec-N`).
    pub const MAX_LEN: usize = 1024;

    /// Checks an id from outside.
    pub fn new(id: impl Into<String>) -> Result<ExecId, Error> {
        let id = id.into();
        if id.is_empty() {
            return Err(Error::bad_request("an exec needs an id"));
        }
        if id.len() > ExecId::MAX_LEN {
            return Err(Error::bad_request(format!(
                "exec id of {} bytes is over the {}-byte limit",
                id.len(),
                ExecId::MAX_LEN
            )));
        }
        if id.chars().any(char::is_control) {
            return Err(Error::bad_request(format!(
                "exec id {id:?} holds a control character"
            )));
        }
        Ok(ExecId(id))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ExecId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A process of the container.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ProcessKey {
    /// The container's own process (PID 1 of its namespace, usually).
    Init,
    /// A process started in the running container.
    Exec(ExecId),
}

impl ProcessKey {
    pub fn is_init(&self) -> bool {
        matches!(self, ProcessKey::Init)
    }

    pub fn exec_id(&self) -> Option<&ExecId> {
        match self {
            ProcessKey::Init => None,
            ProcessKey::Exec(id) => Some(id),
        }
    }
}

impl fmt::Display for ProcessKey {
    /// `init`, or `exec ID`: how the shim's log and errors name it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProcessKey::Init => f.write_str("init"),
            ProcessKey::Exec(id) => write!(f, "exec {id}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_ids_are_bounded() {
        assert!(ExecId::new("").is_err());
        assert!(ExecId::new("a\nb").is_err());
        assert!(ExecId::new("x".repeat(ExecId::MAX_LEN + 1)).is_err());
        assert_eq!(ExecId::new("exec-1").unwrap().as_str(), "exec-1");
        let key = ProcessKey::Exec(ExecId::new("e1").unwrap());
        assert_eq!(key.to_string(), "exec e1");
        assert_eq!(ProcessKey::Init.to_string(), "init");
    }
}
