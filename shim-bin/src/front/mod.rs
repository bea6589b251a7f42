//! The doors to the supervisor: containerd's ttrpc Task service ([`ttrpc`]), tether's JSON-lines
//! control socket ([`control`]) and podman's conmon contract ([`conmon`]), each mapping its wire to the supervisor's operations; both admit only the shim's owner, through one admission step ([`admission`]).

pub mod admission;
pub mod conmon;
pub mod control;
pub mod ttrpc;
