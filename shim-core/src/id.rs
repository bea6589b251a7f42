//! Container ids: safe as a path component and as a runtime argument.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A container id: `[A-Za-z0-9][A-Za-z0-9_.-]{0,127}`. It cannot be empty, start with `.` or `-`,
/// contain `/`, or be longer than 128 bytes, so it is always one harmless path component and never
/// mistaken for an option.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ContainerId(String);

/// Why a string is not a container id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidId {
    /// Empty.
    #[error("invalid container id: empty")]
    Empty,
    /// Over 128 bytes.
    #[error("invalid container id: {len} bytes long, the limit is 128")]
    TooLong { len: usize },
    /// A character outside the allowed set, or a bad first character.
    #[error("invalid container id {id:?}: must match [A-Za-z0-9][A-Za-z0-9_.-]*")]
    BadCharacter { id: String },
}

impl ContainerId {
    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for ContainerId {
    type Err = InvalidId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = s.as_bytes();
        let Some(&first) = bytes.first() else {
            return Err(InvalidId::Empty);
        };
        if bytes.len() > 128 {
            return Err(InvalidId::TooLong { len: bytes.len() });
        }
        let valid_rest = bytes[1..]
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if !first.is_ascii_alphanumeric() || !valid_rest {
            return Err(InvalidId::BadCharacter {
                id: s.chars().take(140).collect(),
            });
        }
        Ok(ContainerId(s.to_owned()))
    }
}

impl TryFrom<String> for ContainerId {
    type Error = InvalidId;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

impl From<ContainerId> for String {
    fn from(id: ContainerId) -> String {
        id.0
    }
}

impl fmt::Display for ContainerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `pad`, not `write_str`: tables format ids with a width (`{:<20}`).
        f.pad(&self.0)
    }
}

impl AsRef<str> for ContainerId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_ids() {
        for id in ["a", "web", "Web_1.2-x", "0", &"a".repeat(128)] {
            assert_eq!(id.parse::<ContainerId>().unwrap().as_str(), id);
        }
    }

    #[test]
    fn rejects_dangerous_ids() {
        assert_eq!("".parse::<ContainerId>(), Err(InvalidId::Empty));
        assert_eq!(
            "a".repeat(200).parse::<ContainerId>(),
            Err(InvalidId::TooLong { len: 200 })
        );
        for id in [
            "../etc", ".hidden", "-rf", "a/b", "a b", "é", "a\n", "..", "_x",
        ] {
            assert!(id.parse::<ContainerId>().is_err(), "{id:?} accepted");
        }
        assert_eq!(
            "../etc".parse::<ContainerId>().unwrap_err().to_string(),
            "invalid container id \"../etc\": must match [A-Za-z0-9][A-Za-z0-9_.-]*"
        );
    }

    #[test]
    fn a_width_pads_the_id() {
        let id: ContainerId = "web".parse().unwrap();
        assert_eq!(format!("[{id:<6}]"), "[web   ]");
        assert_eq!(format!("[{id:>6}]"), "[   web]");
    }

    #[test]
    fn deserializing_validates() {
        assert!(serde_json::from_str::<ContainerId>("\"../x\"").is_err());
        assert_eq!(
            serde_json::from_str::<ContainerId>("\"ok\"")
                .unwrap()
                .as_str(),
            "ok"
        );
    }
}
