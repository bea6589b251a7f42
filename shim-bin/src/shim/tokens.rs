//! Every mio token of the binary, in one place: who owns which token, so no two owners of one
//! poll can collide. There are two polls: the supervisor's (the same under `tether run` and under
//! containerd) and the ttrpc door's thread.

use mio::Token;

// The supervisor's poll.

/// The reaper's SIGCHLD fd.
pub const REAPER: Token = Token(0);
/// The JSON-lines control socket's listener.
pub const CONTROL_LISTENER: Token = Token(1);
/// The ttrpc door wakes the supervisor with calls to answer.
pub const WAKER: Token = Token(2);
/// The memory cgroup's OOM eventfd.
pub const OOM: Token = Token(3);
/// podman's door: the attach socket's listener, the ctl fifo, the signals passed on.
pub const ATTACH_LISTENER: Token = Token(4);
pub const CTL_FIFO: Token = Token(5);
pub const SIGNALS: Token = Token(6);
/// Control socket connections.
pub const CONTROL_CONNECTIONS: Tokens = Tokens::new(1000, 1 << 40);
/// Attach socket connections (podman's door).
pub const ATTACH_CONNECTIONS: Tokens = Tokens::new(1 << 40, 1 << 41);
/// Relays of the processes' stdio: relay `n` has two, its source and its destination.
const RELAYS: usize = 1 << 41;

/// The source and destination tokens of relay `n`.
pub fn relay_tokens(n: usize) -> (Token, Token) {
    (Token(RELAYS + 2 * n), Token(RELAYS + 2 * n + 1))
}

/// The relay a token belongs to.
pub fn relay_of(token: Token) -> Option<usize> {
    token.0.checked_sub(RELAYS).map(|t| t / 2)
}

// The ttrpc door's poll.

pub const DOOR_LISTENER: Token = Token(0);
pub const DOOR_WAKER: Token = Token(1);
/// ttrpc connections.
pub const DOOR_CONNECTIONS: Tokens = Tokens::new(2, 1 << 40);

/// A range of tokens handed out one by one.
#[derive(Debug, Clone, Copy)]
pub struct Tokens {
    start: usize,
    next: usize,
    end: usize,
}

impl Tokens {
    const fn new(start: usize, end: usize) -> Tokens {
        Tokens {
            start,
            next: start,
            end,
        }
    }

    /// The next token of the range. A range holds 2^40 tokens (a new connection every
    /// microsecond for twelve days); after its last, it starts over.
    pub fn take(&mut self) -> Token {
        let token = Token(self.next);
        self.next += 1;
        if self.next == self.end {
            self.next = self.start;
        }
        token
    }
}
