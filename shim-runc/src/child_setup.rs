//! What every runtime child gets between fork and exec: default signal dispositions, an empty signal mask
//! and no inherited fd beyond its stdio.
//!
//! This is the one module of the crate allowed `unsafe`: `Command::pre_exec` is unsafe because the closure
//! runs in the forked child, where only async-signal-safe calls are allowed.
#![allow(unsafe_code)]

use nix::libc;
use std::os::unix::process::CommandExt;
use std::process::Command;

/// Arranges for `command`'s child to start from a clean signal and fd state.
pub(crate) fn prepare(command: &mut Command) {
    // SAFETY: the closure only makes raw syscalls (sigaction, sigprocmask, close_range), all
    // async-signal-safe; it allocates nothing and touches no lock.
    unsafe {
        command.pre_exec(|| {
            reset_signals();
            mark_inherited_fds_cloexec();
            Ok(())
        });
    }
}

/// Ignored signals survive exec, and the parent ignores SIGPIPE (Rust's default) and blocks SIGCHLD
/// (a reaper's signalfd). The runtime and the container must start from the defaults instead.
fn reset_signals() {
    // SAFETY: plain syscalls on a zeroed, valid sigaction/sigset; errors for uncatchable signals
    // (SIGKILL, SIGSTOP) and unused numbers are expected and harmless.
    unsafe {
        let mut default: libc::sigaction = std::mem::zeroed();
        default.sa_sigaction = libc::SIG_DFL;
        for signal in 1..libc::SIGRTMAX() {
            libc::sigaction(signal, &default, std::ptr::null_mut());
        }
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
    }
}

/// Every fd above stdio becomes close-on-exec, whoever opened it and however (a library that forgot
/// O_CLOEXEC, an fd inherited from our own parent). Without close_range (Linux < 5.11) the O_CLOEXEC
/// discipline of the rest of the process is the only guard.
fn mark_inherited_fds_cloexec() {
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    // SAFETY: close_range only changes fd flags; failure (ENOSYS, EINVAL) leaves them as they were.
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3 as libc::c_uint,
            libc::c_uint::MAX,
            CLOSE_RANGE_CLOEXEC,
        );
    }
}
