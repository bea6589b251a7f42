//! A process's output for clients the caller frames (tether's `exec` and `attach`).
//!
//! An exec's output goes to its one client ([`Destination::Client`](crate::Destination::Client)),
//! read only while the client takes it: past [`CLIENT_HIGH_WATER`] queued, the output is left in
//! the pipe, and the process blocks on it as it would writing to a slow terminal. A container's
//! output goes to the log whatever its attached clients do, so a [`Fanout`] hands it to them and
//! cuts off one that falls too far behind.
//!
//! ```
//! use shim_io::client::Fanout;
//! use shim_io::copier::Frames;
//! use shim_io::Stream;
//! use mio::{Registry, Token};
//!
//! /// A door whose clients take everything at once.
//! #[derive(Default)]
//! struct Door(Vec<(Token, Vec<u8>)>);
//! impl Frames for Door {
//!     fn queued(&self, _: Token) -> usize { 0 }
//!     fn send(&mut self, _: &Registry, client: Token, _: Stream, bytes: &[u8]) {
//!         self.0.push((client, bytes.to_vec()));
//!     }
//!     fn cut_off(&mut self, _: &Registry, _: Token, _: &[u8]) {}
//! }
//!
//! let poll = mio::Poll::new()?;
//! let mut door = Door::default();
//! let mut fanout = Fanout::default();
//! fanout.join(Token(1));
//! fanout.join(Token(2));
//! let cut = fanout.output(&mut door, poll.registry(), Stream::Stdout, b"hi\n");
//! assert!(cut.is_empty());
//! assert_eq!(door.0.len(), 2);
//! # Ok::<(), std::io::Error>(())
//! ```

use crate::Stream;
use mio::{Registry, Token};

/// Output is left in the pipe while this much is queued for the client (the process then blocks on
/// a full pipe, as it would writing to a slow terminal).
pub const CLIENT_HIGH_WATER: usize = 1 << 20;

/// How far an attached client may fall behind the container's output before it is cut off: a slow
/// or stalled client never blocks the container, the log, or the other clients.
pub const ATTACH_MAX_BEHIND: usize = 1 << 20;

/// The container's output fanned out to its attached clients (tether's `attach`), as the log
/// engine reads it: unlike an exec's output, which waits for its one client, this output goes to
/// the log whatever the clients do, so a client more than [`ATTACH_MAX_BEHIND`] behind is cut off.
/// Optionally the output from the start is kept (up to the same bound) for the first client, who
/// may attach only once a short command has ended.
#[derive(Debug, Default)]
pub struct Fanout {
    clients: Vec<Token>,
    early: Option<Vec<(Stream, Vec<u8>)>>,
}

impl Fanout {
    /// Keeps the output for the first client to join.
    pub fn keep_for_first(&mut self) {
        self.early = Some(Vec::new());
    }

    /// Whether output is kept for a first client still to come.
    pub fn keeps_for_first(&self) -> bool {
        self.early.is_some()
    }

    /// `client` gets the output from now on; returns how many are attached.
    pub fn join(&mut self, client: Token) -> usize {
        self.clients.push(client);
        self.clients.len()
    }

    pub fn contains(&self, client: Token) -> bool {
        self.clients.contains(&client)
    }

    pub fn clients(&self) -> &[Token] {
        &self.clients
    }

    /// `client` left; returns whether it was attached.
    pub fn leave(&mut self, client: Token) -> bool {
        let was = self.clients.contains(&client);
        self.clients.retain(|c| *c != client);
        was
    }

    pub fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }

    /// Every client, taken (the output ended).
    pub fn take_clients(&mut self) -> Vec<Token> {
        std::mem::take(&mut self.clients)
    }

    /// The output kept for the first client, taken: it is `client`'s to replay, if it is
    /// attached and the first. Nothing is kept after.
    pub fn take_early(&mut self, client: Token) -> Option<Vec<(Stream, Vec<u8>)>> {
        if !self.clients.contains(&client) {
            return None;
        }
        self.early.take()
    }

    /// Output of the container, for every client; returns the clients cut off for falling too far
    /// behind (they are no longer attached; `frames` was told to cut them off).
    pub fn output(
        &mut self,
        frames: &mut dyn crate::copier::Frames,
        registry: &Registry,
        stream: Stream,
        bytes: &[u8],
    ) -> Vec<Token> {
        if let Some(early) = &mut self.early {
            let kept: usize = early.iter().map(|(_, b)| b.len()).sum();
            if kept + bytes.len() <= ATTACH_MAX_BEHIND {
                early.push((stream, bytes.to_vec()));
            }
        }
        let mut cut = Vec::new();
        for &client in &self.clients {
            if frames.queued(client) > ATTACH_MAX_BEHIND {
                let notice = format!(
                    "attach: this client fell more than {} KiB behind the container's output and was disconnected",
                    ATTACH_MAX_BEHIND / 1024
                );
                frames.cut_off(registry, client, notice.as_bytes());
                cut.push(client);
            } else {
                frames.send(registry, client, stream, bytes);
            }
        }
        self.clients.retain(|c| !cut.contains(c));
        cut
    }
}

#[cfg(test)]
mod fanout_tests {
    use super::*;
    use std::collections::HashMap;

    /// Clients that take nothing: what is sent stays queued.
    #[derive(Default)]
    struct Stalled {
        queued: HashMap<Token, usize>,
        cut: Vec<Token>,
    }

    impl crate::copier::Frames for Stalled {
        fn queued(&self, client: Token) -> usize {
            self.queued.get(&client).copied().unwrap_or(0)
        }
        fn send(&mut self, _: &Registry, client: Token, _: Stream, bytes: &[u8]) {
            *self.queued.entry(client).or_default() += bytes.len();
        }
        fn cut_off(&mut self, _: &Registry, client: Token, _: &[u8]) {
            self.cut.push(client);
        }
    }

    #[test]
    fn a_client_too_far_behind_is_cut_off_and_the_others_served() {
        let poll = mio::Poll::new().unwrap();
        let mut frames = Stalled::default();
        let mut fanout = Fanout::default();
        let (slow, fast) = (Token(1), Token(2));
        fanout.join(slow);
        fanout.join(fast);
        let chunk = vec![b'x'; 64 * 1024];
        let mut cut = Vec::new();
        for _ in 0..(ATTACH_MAX_BEHIND / chunk.len() + 2) {
            cut.extend(fanout.output(&mut frames, poll.registry(), Stream::Stdout, &chunk));
            // The fast client takes everything.
            frames.queued.insert(fast, 0);
        }
        assert_eq!(cut, [slow]);
        assert_eq!(frames.cut, [slow]);
        assert_eq!(fanout.clients(), [fast]);
    }

    #[test]
    fn the_first_client_gets_the_kept_output_once() {
        let poll = mio::Poll::new().unwrap();
        let mut frames = Stalled::default();
        let mut fanout = Fanout::default();
        fanout.keep_for_first();
        fanout.output(&mut frames, poll.registry(), Stream::Stdout, b"early");
        let first = Token(7);
        assert_eq!(fanout.take_early(first), None, "not attached yet");
        fanout.join(first);
        assert_eq!(
            fanout.take_early(first),
            Some(vec![(Stream::Stdout, b"early".to_vec())])
        );
        assert!(!fanout.keeps_for_first());
        assert_eq!(fanout.take_early(first), None);
    }
}
