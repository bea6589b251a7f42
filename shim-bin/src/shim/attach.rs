//! The container's output for its attached clients: the fan-out (shim-io's [`Fanout`], with its
//! one rule for a client that falls behind) and the log's tap that feeds it, on while anyone
//! is attached or output is kept for a first client.

use super::Supervisor;
use mio::Token;
use shim_core::lifecycle::Phase;
use shim_core::{Exit, ProcessKey};
use shim_io::client::Fanout;
use shim_io::Stream;

impl Supervisor {
    /// Keeps the container's output from its start for the first client to attach (`tether run
    /// -i/-t` in the foreground attaches only once the container started).
    pub fn keep_output_for_first_attach(&mut self) {
        self.attached.keep_for_first();
        self.copier.tap_log(true);
    }

    /// Whether a client may attach: while the container runs or its output still comes
    /// (exiting), and after the exit for the first client of a `tether run -i/-t`, for which the
    /// output was kept: a short command ends before its client attaches.
    pub fn may_attach(&self) -> bool {
        match self.process(&ProcessKey::Init).map(|init| init.phase()) {
            Ok(Phase::Running | Phase::Paused | Phase::Exiting) => true,
            Ok(Phase::Exited) => self.attached.keeps_for_first(),
            _ => false,
        }
    }

    /// What a client that just attached is owed: the output kept for the first client (if it is
    /// the first), and the init's exit if it came already (the client is then detached). The
    /// first client having its output, a `--rm` container may go.
    pub fn attach_replay(&mut self, client: Token) -> (Vec<(Stream, Vec<u8>)>, Option<Exit>) {
        if !self.attached.contains(client) {
            return (Vec::new(), None);
        }
        let exit = self
            .process(&ProcessKey::Init)
            .ok()
            .and_then(|init| init.exit);
        let early = self.take_first_attach_output(client);
        if exit.is_some() {
            self.detach_client(client);
        }
        if early.is_some() {
            self.release_removal();
        }
        (early.unwrap_or_default(), exit)
    }

    /// `client` sees the container's output from now on; returns how many are attached.
    pub fn attach_client(&mut self, client: Token) -> usize {
        let count = self.attached.join(client);
        self.copier.tap_log(true);
        count
    }

    /// The container's output is handed to the door from now on, attached clients or none: a
    /// door whose clients connect before the container starts (podman's attach socket) sees a
    /// client in the same turn as its first output, and must not lose that output.
    pub fn tap_output_always(&mut self) {
        self.tap_always = true;
        self.copier.tap_log(true);
    }

    /// `client` left (or was cut off); returns whether it was attached.
    pub fn detach_client(&mut self, client: Token) -> bool {
        let was = self.attached.leave(client);
        if was && self.attached.is_empty() && !self.attached.keeps_for_first() && !self.tap_always {
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

    /// Output the copier read into the log, for every attached client through the door's frames; returns
    /// the clients cut off for falling too far behind.
    pub(crate) fn fan_out(&mut self, stream: Stream, bytes: &[u8]) -> Vec<Token> {
        let registry = self.poll.registry();
        let Some(frames) = super::frames(&mut self.door) else {
            return Vec::new();
        };
        self.attached.output(frames, registry, stream, bytes)
    }
}
