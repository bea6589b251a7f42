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
}
