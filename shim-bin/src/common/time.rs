//! Wall-clock timestamps in the same RFC 3339 form the logs use.

use std::time::SystemTime;

/// `2026-11-27T02:40:01.123456789Z` for `time`.
pub fn rfc3339(time: SystemTime) -> String {
    let mut formatter = shim_io::TimestampFormatter::new();
    String::from_utf8_lossy(formatter.format(time)).into_owned()
}

/// Now, as [`rfc3339`].
pub fn now() -> String {
    rfc3339(SystemTime::now())
}
