//! The doors to the supervisor: containerd's ttrpc Task service ([`ttrpc`]) and tether's JSON-lines
//! control socket ([`control`]), each mapping its wire to the supervisor's operations; both admit only the shim's owner, through one admission step ([`admission`]).

pub mod admission;
pub mod control;
pub mod ttrpc;
