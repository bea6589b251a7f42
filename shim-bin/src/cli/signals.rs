//! Signal names and numbers as people type them: `9`, `KILL`, `SIGKILL`, `kill`.

use nix::sys::signal::Signal;
use std::str::FromStr;

/// Parses a signal given by number or name.
pub fn parse_signal(text: &str) -> Result<i32, String> {
    if let Ok(number) = text.parse::<i32>() {
        return match Signal::try_from(number) {
            Ok(_) => Ok(number),
            Err(_) if (32..=64).contains(&number) => Ok(number),
            Err(_) => Err(format!("invalid signal {text:?}")),
        };
    }
    let upper = text.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    Signal::from_str(&name)
        .map(|s| s as i32)
        .map_err(|_| format!("invalid signal {text:?}"))
}

/// Whether `text` was meant as a signal: a number, a `SIG…` name, or an upper-case word (`KILL`,
/// `HUP`). Container ids are most often lower case, so `web` is an id and `WEB` a bad signal.
pub fn looks_like_signal(text: &str) -> bool {
    let digits = text.strip_prefix('-').unwrap_or(text);
    !text.is_empty()
        && (digits.bytes().all(|b| b.is_ascii_digit())
            || text.to_ascii_uppercase().starts_with("SIG")
            || (text.bytes().any(|b| b.is_ascii_uppercase())
                && text.bytes().all(|b| {
                    b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'+' || b == b'-'
                })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers() {
        assert_eq!(parse_signal("9"), Ok(9));
        assert_eq!(parse_signal("KILL"), Ok(9));
        assert_eq!(parse_signal("sigterm"), Ok(15));
        assert_eq!(parse_signal("SIGUSR1"), Ok(10));
        assert_eq!(parse_signal("40"), Ok(40));
        assert!(parse_signal("0x").is_err());
        assert!(parse_signal("999").is_err());
        assert!(parse_signal("NOPE").is_err());
    }

    #[test]
    fn what_is_meant_as_a_signal() {
        for text in ["65", "0", "-1", "SIGNOPE", "sigterm", "KILLL", "RTMIN+1"] {
            assert!(looks_like_signal(text), "{text}");
        }
        for text in ["web", "box-1", "a1", "", "Web"] {
            assert!(!looks_like_signal(text), "{text}");
        }
    }
}
