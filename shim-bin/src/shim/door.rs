//! How a door meets the supervisor's loop. A door that serves its clients on the supervisor's own
//! thread (tether's control socket) is registered by its launcher with [`Supervisor::register_door`]:
//! the supervisor keeps it, polls its sockets, asks when it is next due, hands it the output its
//! clients are to see, and calls its [`DoorHooks`] at fixed points of each turn. The supervisor
//! knows no door by name; a door knows the supervisor's operations. (containerd's ttrpc door
//! serves on a thread of its own and hands its calls over as [`super::Job`]s.)

use super::Supervisor;
use mio::Token;
use shim_core::{Exit, ProcessKey};
use shim_io::copier::Frames;
use shim_io::Stream;
use std::any::Any;
use std::time::Instant;

/// A door's state, as the supervisor holds it.
pub trait Door: Frames + Any {
    /// Whether `token` is one of its sockets'.
    fn owns(&self, token: Token) -> bool;
    /// Whether client input waits to be looked at without an event.
    fn has_backlog(&self) -> bool;
    /// When it is next due (an idle client's end).
    fn next_deadline(&self) -> Option<Instant>;
    /// Sends what is queued and closes every connection: the daemon is going.
    fn unregister(self: Box<Self>);
}

/// Where the supervisor's loop calls a door.
#[derive(Debug, Clone, Copy)]
pub struct DoorHooks {
    /// A readiness event on one of its sockets.
    pub ready: fn(&mut Supervisor, Token),
    /// Client input left over from earlier turns.
    pub backlog: fn(&mut Supervisor),
    /// Once a turn, after the exits it recorded.
    pub tick: fn(&mut Supervisor),
    /// Output of the container, for its attached clients.
    pub output: fn(&mut Supervisor, Stream, &[u8]),
    /// A process took its clients' input: they may send more.
    pub input_drained: fn(&mut Supervisor),
    /// A process's exit was recorded.
    pub exited: fn(&mut Supervisor, &ProcessKey, Exit),
}

impl Supervisor {
    /// Registers the door served on this thread, and where to call it.
    pub fn register_door(&mut self, door: Box<dyn Door>, hooks: DoorHooks) {
        self.door = Some(door);
        self.door_hooks = Some(hooks);
    }

    /// The door, taken away (the daemon is going).
    pub fn take_door(&mut self) -> Option<Box<dyn Door>> {
        self.door_hooks = None;
        self.door.take()
    }

    /// The registered door's hooks.
    pub(crate) fn hooks(&self) -> Option<DoorHooks> {
        self.door_hooks
    }
}
