//! What the CLI and the daemon both use: the system calls that need `unsafe` ([`sys`], the one
//! module allowed it), the socket paths ([`sockpath`]), timestamps ([`time`]), the config `tether
//! run` hands its daemon ([`config`]), sizes and durations as people write them ([`units`]), users
//! and groups in a rootfs ([`users`]), and a container's cgroup ([`cgroup`]) and its figures ([`metrics`]).

pub mod cgroup;
pub mod config;
pub mod metrics;
pub mod sockpath;
pub mod sys;
pub mod time;
pub mod units;
pub mod users;
