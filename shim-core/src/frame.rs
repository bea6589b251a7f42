//! The framed half of the control protocol. After the daemon answers an `exec` or `attach` request,
//! that connection carries frames instead of lines: `[kind: u8][length: u32 big-endian][payload]`.

/// Largest payload a frame may carry; longer data is sent as several frames.
pub const MAX_PAYLOAD: usize = 64 * 1024;
/// Bytes before the payload.
pub const HEADER: usize = 5;

/// What a frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameKind {
    /// Client → daemon: bytes for the process's stdin.
    Stdin = 0,
    /// Daemon → client: bytes the process wrote to stdout (or its terminal).
    Stdout = 1,
    /// Daemon → client: bytes the process wrote to stderr.
    Stderr = 2,
    /// Daemon → client: the end, as JSON `{"exit_code":N,"timed_out":bool}`; the daemon then closes.
    Exit = 3,
    /// Client → daemon: the client's stdin ended; the process's stdin is closed.
    StdinEof = 4,
    /// Client → daemon: the terminal's size, rows and columns as two big-endian u16.
    Resize = 5,
    /// Daemon → client: a message for the person (e.g. why an attach client was cut off).
    Notice = 6,
}

impl FrameKind {
    fn from_byte(byte: u8) -> Option<Self> {
        Some(match byte {
            0 => FrameKind::Stdin,
            1 => FrameKind::Stdout,
            2 => FrameKind::Stderr,
            3 => FrameKind::Exit,
            4 => FrameKind::StdinEof,
            5 => FrameKind::Resize,
            6 => FrameKind::Notice,
            _ => return None,
        })
    }
}

/// Appends one frame (or several, for a payload over [`MAX_PAYLOAD`]) to `out`.
pub fn encode(out: &mut Vec<u8>, kind: FrameKind, payload: &[u8]) {
    let mut chunks = payload.chunks(MAX_PAYLOAD).peekable();
    if chunks.peek().is_none() {
        out.push(kind as u8);
        out.extend_from_slice(&0u32.to_be_bytes());
        return;
    }
    for chunk in chunks {
        out.push(kind as u8);
        out.extend_from_slice(&(chunk.len() as u32).to_be_bytes());
        out.extend_from_slice(chunk);
    }
}

/// A resize payload.
pub fn resize_payload(rows: u16, cols: u16) -> [u8; 4] {
    let [r0, r1] = rows.to_be_bytes();
    let [c0, c1] = cols.to_be_bytes();
    [r0, r1, c0, c1]
}

/// Reads a resize payload.
pub fn parse_resize(payload: &[u8]) -> Option<(u16, u16)> {
    let bytes: [u8; 4] = payload.try_into().ok()?;
    Some((
        u16::from_be_bytes([bytes[0], bytes[1]]),
        u16::from_be_bytes([bytes[2], bytes[3]]),
    ))
}

/// Why a byte stream is not a valid frame sequence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Unknown kind byte.
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
    /// Length over [`MAX_PAYLOAD`].
    #[error("frame of {0} bytes is over the {MAX_PAYLOAD}-byte limit")]
    TooLong(usize),
}

/// Takes the first complete frame off the front of `buffer`: `Ok(None)` when more bytes are needed.
pub fn decode(buffer: &mut Vec<u8>) -> Result<Option<(FrameKind, Vec<u8>)>, FrameError> {
    if buffer.len() < HEADER {
        return Ok(None);
    }
    let kind = FrameKind::from_byte(buffer[0]).ok_or(FrameError::UnknownKind(buffer[0]))?;
    let length = u32::from_be_bytes([buffer[1], buffer[2], buffer[3], buffer[4]]) as usize;
    if length > MAX_PAYLOAD {
        return Err(FrameError::TooLong(length));
    }
    if buffer.len() < HEADER + length {
        return Ok(None);
    }
    let payload = buffer[HEADER..HEADER + length].to_vec();
    buffer.drain(..HEADER + length);
    Ok(Some((kind, payload)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_in_pieces() {
        let mut wire = Vec::new();
        encode(&mut wire, FrameKind::Stdout, b"hello");
        encode(&mut wire, FrameKind::StdinEof, b"");
        encode(&mut wire, FrameKind::Resize, &resize_payload(24, 80));
        let big = vec![7u8; MAX_PAYLOAD + 10];
        encode(&mut wire, FrameKind::Stderr, &big);
        // Feed it a byte at a time, as a socket might.
        let mut buffer = Vec::new();
        let mut frames = Vec::new();
        for byte in wire {
            buffer.push(byte);
            while let Some(frame) = decode(&mut buffer).unwrap() {
                frames.push(frame);
            }
        }
        assert_eq!(frames[0], (FrameKind::Stdout, b"hello".to_vec()));
        assert_eq!(frames[1], (FrameKind::StdinEof, Vec::new()));
        assert_eq!(parse_resize(&frames[2].1), Some((24, 80)));
        assert_eq!(frames[3].1.len(), MAX_PAYLOAD);
        assert_eq!(frames[4].1.len(), 10);
        assert!(buffer.is_empty());
    }

    #[test]
    fn garbage_is_an_error_not_a_hang() {
        assert_eq!(
            decode(&mut vec![9, 0, 0, 0, 0]),
            Err(FrameError::UnknownKind(9))
        );
        let mut huge = vec![1];
        huge.extend_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(
            decode(&mut huge),
            Err(FrameError::TooLong(u32::MAX as usize))
        );
    }
}
