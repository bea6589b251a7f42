//! Readers written to the kubelet's and docker's rules, a small deterministic PRNG, and a pump that
//! runs a copier until a condition holds.

#![allow(dead_code)]

use mio::{Events, Poll, Token};
use shim_io::copier::Copier;
use std::time::{Duration, Instant};

/// The kubelet's CRI reader: per stream, `F` content gets a newline appended, `P` content does not.
pub fn read_cri(log: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    for line in log.split_inclusive(|&b| b == b'\n') {
        let line = line
            .strip_suffix(b"\n")
            .expect("every record ends with a newline");
        let mut fields = line.splitn(4, |&b| b == b' ');
        let timestamp = fields.next().unwrap();
        assert_eq!(
            timestamp.len(),
            30,
            "timestamp {:?}",
            String::from_utf8_lossy(timestamp)
        );
        let stream = fields.next().unwrap();
        let tag = fields.next().unwrap();
        let content = fields.next().unwrap_or_default();
        let target = match stream {
            b"stdout" => &mut out,
            b"stderr" => &mut err,
            other => panic!("stream {other:?}"),
        };
        target.extend_from_slice(content);
        match tag {
            b"F" => target.push(b'\n'),
            b"P" => {}
            other => panic!("tag {other:?}"),
        }
    }
    (out, err)
}

/// docker's json-file reader: the concatenated `log` fields per stream.
pub fn read_json(log: &[u8]) -> (String, String) {
    let (mut out, mut err) = (String::new(), String::new());
    for line in log.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let value: serde_json::Value = serde_json::from_slice(line).expect("valid json record");
        let text = value["log"].as_str().unwrap();
        match value["stream"].as_str().unwrap() {
            "stdout" => out.push_str(text),
            "stderr" => err.push_str(text),
            other => panic!("stream {other}"),
        }
        assert_eq!(value["time"].as_str().unwrap().len(), 30);
    }
    (out, err)
}

/// Go's (and so docker's) lossy decoding: every byte that does not start a valid character is U+FFFD.
pub fn go_lossy(bytes: &[u8]) -> String {
    let mut text = String::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        match std::str::from_utf8(rest) {
            Ok(valid) => {
                text.push_str(valid);
                break;
            }
            Err(e) => {
                let (valid, after) = rest.split_at(e.valid_up_to());
                text.push_str(std::str::from_utf8(valid).unwrap());
                text.push('\u{FFFD}');
                rest = &after[1..];
            }
        }
    }
    text
}

/// xorshift64*: deterministic, seedable, good enough to pick sizes and bytes.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// The tokens copy `n` is registered under.
pub fn tokens(n: usize) -> (Token, Token) {
    (Token(2 * n), Token(2 * n + 1))
}

/// Polls and feeds the copier until `done` says so; panics after `timeout`.
pub fn pump_until(
    poll: &mut Poll,
    copier: &mut Copier,
    timeout: Duration,
    mut done: impl FnMut(&mut Copier) -> bool,
) {
    let deadline = Instant::now() + timeout;
    loop {
        if done(copier) {
            return;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "the copier did not get there within {timeout:?}"
        );
        pump_once(poll, copier, left.min(Duration::from_millis(100)));
    }
}

/// One round: backlog, then events that arrive within `wait`.
pub fn pump_once(poll: &mut Poll, copier: &mut Copier, wait: Duration) {
    copier.work_backlog(poll.registry(), None);
    let mut events = Events::with_capacity(64);
    poll.poll(&mut events, Some(poll_timeout(copier, wait)))
        .unwrap();
    for event in events.iter() {
        copier.ready(poll.registry(), event.token().0 / 2, None);
    }
}

/// How long to poll: not past the copier's next deadline, not at all with a backlog.
pub fn poll_timeout(copier: &Copier, at_most: Duration) -> Duration {
    if copier.has_backlog() {
        return Duration::ZERO;
    }
    match copier.next_deadline() {
        Some(at) => at.saturating_duration_since(Instant::now()).min(at_most),
        None => at_most,
    }
}
