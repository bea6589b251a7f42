//! Stdio to and from a client the caller frames (tether's `exec` and `attach`): a process's output
//! read from its pipe (or terminal) for the caller to hand to the client, and what the client typed
//! written to the process. Both are flow-controlled: the caller reads output only while the client
//! takes it (the process then blocks on a full pipe, as it would writing to a slow terminal), and
//! input is held only up to [`INPUT_HIGH_WATER`], past which the caller stops reading its clients.
//!
//! ```
//! use shim_io::client::{ClientInput, ClientOutput, Taken};
//! use shim_io::Stream;
//! use std::io::Write;
//!
//! let poll = mio::Poll::new()?;
//! let (read_end, write_end) = shim_io::fdio::pipe()?;
//! let mut output = ClientOutput::new(read_end, Stream::Stdout, None, poll.registry(), mio::Token(1))?;
//! std::fs::File::from(write_end).write_all(b"hi")?; // and closed: the end follows
//! let mut buf = [0; 16];
//! assert!(matches!(output.read(&mut buf), Taken::Data(2)));
//! assert!(matches!(output.read(&mut buf), Taken::End));
//!
//! let (read_end, write_end) = shim_io::fdio::pipe()?;
//! let mut input = ClientInput::new(write_end.into(), false)?;
//! input.push(b"typed");
//! input.end();
//! input.flush(poll.registry()); // all written, and the input ended: closed
//! assert!(input.is_closed());
//! drop(input); // the pipe's write end
//! let mut typed = String::new();
//! std::io::Read::read_to_string(&mut std::fs::File::from(read_end), &mut typed)?;
//! assert_eq!(typed, "typed");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use crate::fdio::{set_nonblocking, write_some};
use crate::Stream;
use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd};

/// Output is left in the pipe while this much is queued for the client (the process then blocks on
/// a full pipe, as it would writing to a slow terminal).
pub const CLIENT_HIGH_WATER: usize = 1 << 20;
/// Input frames are left unread while this much waits for the process to take it.
pub const INPUT_HIGH_WATER: usize = 1 << 20;

/// A process's output for a client. Without a client (detached, or gone) it is read and dropped, so
/// the process never blocks on it.
#[derive(Debug)]
pub struct ClientOutput {
    file: File,
    /// Which of the process's outputs it is (a terminal's is its stdout).
    pub stream: Stream,
    /// The client it goes to (the caller's token for it).
    pub client: Option<Token>,
    open: bool,
}

/// What one turn of a [`ClientOutput`] read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Taken {
    Data(usize),
    /// Nothing now.
    Empty,
    /// End of the output (EIO from a terminal whose other side closed counts as the end too).
    End,
}

impl ClientOutput {
    /// Reads `fd` on readiness under `token`.
    pub fn new(
        fd: OwnedFd,
        stream: Stream,
        client: Option<Token>,
        registry: &Registry,
        token: Token,
    ) -> io::Result<ClientOutput> {
        set_nonblocking(&fd)?;
        registry.register(&mut SourceFd(&fd.as_raw_fd()), token, Interest::READABLE)?;
        Ok(ClientOutput {
            file: File::from(fd),
            stream,
            client,
            open: true,
        })
    }

    /// Whether its process may still write to it.
    pub fn is_open(&self) -> bool {
        self.open
    }

    /// Reads what is there into `buf`.
    pub fn read(&mut self, buf: &mut [u8]) -> Taken {
        if !self.open {
            return Taken::End;
        }
        loop {
            return match self.file.read(buf) {
                Ok(0) => Taken::End,
                Ok(n) => Taken::Data(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Taken::Empty,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => Taken::End,
            };
        }
    }

    /// Stops reading (its end, or an orphan holds it past the grace period).
    pub fn close(&mut self, registry: &Registry) {
        if self.open {
            let _ = registry.deregister(&mut SourceFd(&self.file.as_raw_fd()));
            self.open = false;
        }
    }
}

/// What clients send a process: written as far as the process takes it, the rest held (up to
/// [`INPUT_HIGH_WATER`], past which the clients are not read).
#[derive(Debug)]
pub struct ClientInput {
    file: File,
    pending: Vec<u8>,
    /// The client's input ended: close once `pending` is written (a terminal has no end of input).
    eof: bool,
    terminal: bool,
    closed: bool,
}

impl ClientInput {
    pub fn new(file: File, terminal: bool) -> io::Result<ClientInput> {
        set_nonblocking(&file)?;
        Ok(ClientInput {
            file,
            pending: Vec::new(),
            eof: false,
            terminal,
            closed: false,
        })
    }

    pub fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        registry.register(
            &mut SourceFd(&self.file.as_raw_fd()),
            token,
            Interest::WRITABLE,
        )
    }

    /// Takes input from a client.
    pub fn push(&mut self, bytes: &[u8]) {
        if !self.closed {
            self.pending.extend_from_slice(bytes);
        }
    }

    /// The client's input ended.
    pub fn end(&mut self) {
        if !self.terminal {
            self.eof = true;
        }
    }

    /// Whether clients should wait before sending more.
    pub fn full(&self) -> bool {
        self.pending.len() >= INPUT_HIGH_WATER
    }

    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Writes what the process takes now; closes at the end of the input or when the process's
    /// side is gone.
    pub fn flush(&mut self, registry: &Registry) {
        if self.closed {
            return;
        }
        let broken = match write_some(&mut self.file, &self.pending) {
            Ok(n) => {
                self.pending.drain(..n);
                false
            }
            Err(_) => true,
        };
        if broken || (self.eof && self.pending.is_empty()) {
            self.close(registry);
        }
    }

    pub fn close(&mut self, registry: &Registry) {
        if !self.closed {
            let _ = registry.deregister(&mut SourceFd(&self.file.as_raw_fd()));
            self.pending = Vec::new();
            self.closed = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;

    /// Waits (at most 10 s) until the other end of `pipe` is closed for good: POLLERR on a write
    /// end, POLLHUP on a read end (`interest` says which end it is).
    fn await_event(pipe: &File, interest: PollFlags) -> bool {
        let gone = PollFlags::POLLERR | PollFlags::POLLHUP;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            let mut fds = [PollFd::new(pipe.as_fd(), interest)];
            if poll(&mut fds, PollTimeout::from(100u16)).is_ok()
                && fds[0].revents().is_some_and(|r| r.intersects(gone))
            {
                return true;
            }
        }
        false
    }

    #[test]
    fn input_is_held_up_to_its_bound_and_closed_when_the_process_is_gone() {
        let poll = mio::Poll::new().unwrap();
        let (read_end, write_end) = crate::fdio::pipe().unwrap();
        let mut input = ClientInput::new(write_end.into(), false).unwrap();
        input.push(&vec![b'x'; INPUT_HIGH_WATER * 2]);
        input.flush(poll.registry());
        assert!(
            input.full(),
            "a pipe takes 64 KiB: the rest is held, clients wait"
        );
        assert!(!input.is_closed());
        drop(read_end);
        // The loop flushes when the write end reports the reader gone (EPOLLERR). Await that event
        // rather than assume it: in a test process other threads may briefly hold a reference to
        // the closed read end (the kernel releases a file when its last user lets go).
        assert!(
            await_event(&input.file, nix::poll::PollFlags::POLLOUT),
            "the write end tells that the reader is gone"
        );
        input.flush(poll.registry());
        assert!(input.is_closed(), "nothing more can be delivered");
    }

    #[test]
    fn output_with_nothing_written_yet_is_empty_not_ended() {
        let poll = mio::Poll::new().unwrap();
        let (read_end, write_end) = crate::fdio::pipe().unwrap();
        let mut output =
            ClientOutput::new(read_end, Stream::Stderr, None, poll.registry(), Token(1)).unwrap();
        let mut buf = [0; 8];
        assert_eq!(output.read(&mut buf), Taken::Empty);
        drop(write_end);
        // As the loop does: read on the pipe's event (see the input test for why it is awaited).
        assert!(
            await_event(&output.file, nix::poll::PollFlags::POLLIN),
            "the read end tells that the writer is gone"
        );
        assert_eq!(output.read(&mut buf), Taken::End);
        output.close(poll.registry());
        assert!(!output.is_open());
    }
}

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
