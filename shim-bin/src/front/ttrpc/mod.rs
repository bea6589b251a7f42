//! containerd's door: the ttrpc Task service on its own thread ([`door`]), the calls it hands the
//! supervisor ([`calls`]) and the task events sent back ([`events`]).

pub mod calls;
pub mod door;
pub mod events;
pub mod metrics;
pub mod options;
