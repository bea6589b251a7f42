//! Encoding records into the CRI and docker json-file formats.

use crate::framing::Record;
use crate::timestamp::TIMESTAMP_LEN;

/// Which output stream of the container a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    /// fd 1.
    Stdout,
    /// fd 2.
    Stderr,
}

impl Stream {
    /// `stdout` or `stderr`, as both formats spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }

    pub(crate) fn index(self) -> usize {
        match self {
            Stream::Stdout => 0,
            Stream::Stderr => 1,
        }
    }
}

/// The kubelet's format: `<timestamp> <stream> <F|P> <content>\n`. `F` ends a line, `P` is a chunk of
/// one (its content has no newline after it in the original output).
pub fn encode_cri(
    out: &mut Vec<u8>,
    timestamp: &[u8; TIMESTAMP_LEN],
    stream: Stream,
    record: Record<'_>,
) {
    out.reserve(TIMESTAMP_LEN + 10 + record.content.len());
    out.extend_from_slice(timestamp);
    out.push(b' ');
    out.extend_from_slice(stream.as_str().as_bytes());
    out.extend_from_slice(if record.ends_line { b" F " } else { b" P " });
    out.extend_from_slice(record.content);
    out.push(b'\n');
}

/// Docker's json-file format: `{"log":"...","stream":"stdout","time":"..."}\n`. A record that ends a
/// line carries its `\n` in `log`; a chunk does not. Invalid UTF-8 becomes U+FFFD, one per invalid byte,
/// as Go's encoder (and so docker) does.
pub fn encode_json(
    out: &mut Vec<u8>,
    timestamp: &[u8; TIMESTAMP_LEN],
    stream: Stream,
    record: Record<'_>,
) {
    out.reserve(record.content.len() + 80);
    out.extend_from_slice(b"{\"log\":\"");
    escape_json_lossy(out, record.content);
    if record.ends_line {
        out.extend_from_slice(b"\\n");
    }
    out.extend_from_slice(b"\",\"stream\":\"");
    out.extend_from_slice(stream.as_str().as_bytes());
    out.extend_from_slice(b"\",\"time\":\"");
    out.extend_from_slice(timestamp);
    out.extend_from_slice(b"\"}\n");
}

/// Bytes that can be copied into a JSON string as they are: printable ASCII except `"` and `\`.
const fn plain_table() -> [bool; 256] {
    let mut table = [false; 256];
    let mut b = 0x20;
    while b < 0x80 {
        table[b] = b != b'"' as usize && b != b'\\' as usize;
        b += 1;
    }
    table
}

static PLAIN: [bool; 256] = plain_table();

fn escape_json_lossy(out: &mut Vec<u8>, bytes: &[u8]) {
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && PLAIN[bytes[i] as usize] {
            i += 1;
        }
        out.extend_from_slice(&bytes[start..i]);
        let Some(&byte) = bytes.get(i) else { break };
        if byte < 0x80 {
            escape_ascii(out, byte);
            i += 1;
        } else if let Some(len) = utf8_char_len(&bytes[i..]) {
            out.extend_from_slice(&bytes[i..i + len]);
            i += len;
        } else {
            out.extend_from_slice("\u{FFFD}".as_bytes());
            i += 1;
        }
    }
}

/// The length of the valid UTF-8 character at the start of `bytes`, if there is one.
fn utf8_char_len(bytes: &[u8]) -> Option<usize> {
    let len = match bytes[0] {
        0xC2..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF4 => 4,
        _ => return None,
    };
    let candidate = bytes.get(..len)?;
    std::str::from_utf8(candidate).ok().map(|_| len)
}

fn escape_ascii(out: &mut Vec<u8>, byte: u8) {
    match byte {
        b'"' => out.extend_from_slice(b"\\\""),
        b'\\' => out.extend_from_slice(b"\\\\"),
        b'\n' => out.extend_from_slice(b"\\n"),
        b'\r' => out.extend_from_slice(b"\\r"),
        b'\t' => out.extend_from_slice(b"\\t"),
        _ => {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(b"\\u00");
            out.push(HEX[(byte >> 4) as usize]);
            out.push(HEX[(byte & 0xf) as usize]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TS: &[u8; TIMESTAMP_LEN] = b"2016-10-06T00:17:09.669794202Z";

    fn json(content: &[u8], ends_line: bool) -> String {
        let mut out = Vec::new();
        encode_json(&mut out, TS, Stream::Stdout, Record { content, ends_line });
        String::from_utf8(out).unwrap()
    }

    fn cri(content: &[u8], ends_line: bool, stream: Stream) -> String {
        let mut out = Vec::new();
        encode_cri(&mut out, TS, stream, Record { content, ends_line });
        String::from_utf8_lossy(&out).into_owned()
    }

    #[test]
    fn cri_records() {
        insta::assert_snapshot!([
            cri(b"hello", true, Stream::Stdout),
            cri(b"", true, Stream::Stderr),
            cri(b"chunk of a long line", false, Stream::Stdout),
            cri(b"carriage\rreturn", true, Stream::Stdout),
        ]
        .concat());
    }

    #[test]
    fn json_records() {
        insta::assert_snapshot!([
            json(b"hello", true),
            json(b"tab\there \"quoted\" back\\slash", true),
            json(b"bell\x07 cr\r", true),
            json("caf\u{e9} \u{20ac} \u{1F600}".as_bytes(), true),
            json(b"bad \xff\xfe utf8 \xe2\x82", false),
            json(b"", true),
        ]
        .concat());
    }

    #[test]
    fn json_is_valid_and_lossy_per_byte() {
        let line = json(b"a\xe2\x82Ab\xc3", true);
        let value: serde_json::Value = serde_json::from_str(line.trim_end()).unwrap();
        assert_eq!(value["log"], "a\u{FFFD}\u{FFFD}Ab\u{FFFD}\n");
        assert_eq!(value["stream"], "stdout");
        assert_eq!(value["time"], "2016-10-06T00:17:09.669794202Z");
    }
}
