//! The container's output for its attached clients: the fan-out (shim-io's [`Fanout`], with its
//! one rule for a client that falls behind) and the log engine's tap that feeds it, on while anyone
//! is attached or output is kept for a first client.

use super::Supervisor;
use mio::Token;
use shim_io::client::Fanout;
use shim_io::Stream;

impl Supervisor {
    /// Keeps the container's output from its start for the first client to attach (`tether run
    /// -i/-t` in the foreground attaches only once the container started).
    pub fn keep_output_for_first_attach(&mut self) {
        self.attached.keep_for_first();
        self.copier.tap_log(true);
    }

    /// `client` sees the container's output from now on; returns how many are attached.
    pub fn attach_client(&mut self, client: Token) -> usize {
        let count = self.attached.join(client);
        self.copier.tap_log(true);
        count
    }

    /// `client` left (or was cut off); returns whether it was attached.
    pub fn detach_client(&mut self, client: Token) -> bool {
        let was = self.attached.leave(client);
        if was && self.attached.is_empty() && !self.attached.keeps_for_first() {
            self.copier.tap_log(false);
        }
        was
    }

    /// The attached clients.
    pub fn attached(&self) -> &Fanout {
        &self.attached
    }

    /// The output kept for the first client, if `client` is attached and the first.
    pub fn take_first_attach_output(&mut self, client: Token) -> Option<Vec<(Stream, Vec<u8>)>> {
        self.attached.take_early(client)
    }

    /// Every attached client, taken (the init's exit ends their output).
    pub fn take_attached(&mut self) -> Vec<Token> {
        self.attached.take_clients()
    }

    /// Output the log engine read, for every attached client through the door's frames; returns
    /// the clients cut off for falling too far behind.
    pub(crate) fn fan_out(&mut self, stream: Stream, bytes: &[u8]) -> Vec<Token> {
        let registry = self.poll.registry();
        let Some(frames) = super::frames(&mut self.door) else {
            return Vec::new();
        };
        self.attached.output(frames, registry, stream, bytes)
    }
}
