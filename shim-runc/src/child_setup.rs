//! What every runtime child gets between fork and exec: default signal dispositions, an empty signal mask
//! and no inherited fd beyond its stdio.
//!
//! This is the one module of the crate allowed `unsafe`: `Command::pre_exec` is unsafe because the closure
//! runs in the forked child, where only async-signal-safe calls are allowed.
#![allow(unsafe_code)]

use nix::libc;
use std::os::unix::process::CommandExt;
use std::process::Command;

/// Arranges for `command`'s child to start from a clean signal and fd state: default dispositions
/// for every signal, an empty signal mask, and every fd above stdio close-on-exec. Further
/// `pre_exec` closures added after this one run after it (and may hand fds on with `dup2`).
pub fn prepare(command: &mut Command) {
    prepare_preserving(command, 0);
}

/// [`prepare`], but fds 3 to 3 + `preserved` - 1 are handed on open (`runc create --preserve-fds
/// N` passes them to the container; podman leaves them to its monitor at those numbers).
pub fn prepare_preserving(command: &mut Command, preserved: u32) {
    // SAFETY: the closure only makes raw syscalls (sigaction, sigprocmask, close_range, fcntl),
    // all async-signal-safe; it allocates nothing and touches no lock.
    unsafe {
        command.pre_exec(move || {
            reset_signals();
            mark_inherited_fds_cloexec(preserved);
            Ok(())
        });
    }
}

// The layout below is the kernel's on these two; elsewhere it differs (mips, sparc, alpha) and must
// be checked before the crate builds there.
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
compile_error!("KernelSigaction's layout is known for x86_64 and aarch64 only");

/// The kernel's `struct sigaction` for rt_sigaction(2) (x86_64 and aarch64 layout).
#[repr(C)]
struct KernelSigaction {
    handler: libc::sighandler_t,
    flags: libc::c_ulong,
    restorer: libc::sighandler_t,
    mask: u64,
}

/// Ignored signals survive exec, and the parent ignores SIGPIPE (Rust's default) and blocks SIGCHLD
/// (a reaper's signalfd). The runtime and the container must start from the defaults instead.
///
/// The raw syscall, not libc's `sigaction`: glibc refuses to touch the two real-time signals it
/// reserves (32 and 33), yet an ignored 32 inherited from our own parent would reach the container.
fn reset_signals() {
    const NSIG: libc::c_int = 64;
    let default = KernelSigaction {
        handler: libc::SIG_DFL,
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    // SAFETY: rt_sigaction with a valid struct and the kernel's sigset size; errors for uncatchable
    // signals (SIGKILL, SIGSTOP) are expected and harmless. sigprocmask on a valid empty set.
    unsafe {
        for signal in 1..=NSIG {
            libc::syscall(
                libc::SYS_rt_sigaction,
                signal,
                &default as *const KernelSigaction,
                std::ptr::null_mut::<KernelSigaction>(),
                8usize,
            );
        }
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
    }
}

/// Every fd above stdio becomes close-on-exec, whoever opened it and however (a library that forgot
/// O_CLOEXEC, an fd inherited from our own parent). Without close_range (Linux < 5.11) the O_CLOEXEC
/// discipline of the rest of the process is the only guard.
fn mark_inherited_fds_cloexec(preserved: u32) {
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    let first_closed = 3u32.saturating_add(preserved);
    for fd in 3..first_closed {
        // SAFETY: fcntl on a number: an fd that is not open only makes it fail with EBADF.
        unsafe {
            libc::fcntl(fd as libc::c_int, libc::F_SETFD, 0);
        }
    }
    close_range(first_closed, CLOSE_RANGE_CLOEXEC);
}

/// Closes every fd from `first` up: what a long-lived daemon's starter left open without
/// O_CLOEXEC must not stay open for the container's whole life. Call it before opening any fd
/// above `first`.
pub fn close_fds_from(first: u32) {
    close_range(first, 0);
}

/// close_range(2) from `first` to the last fd, closing them (`flags` 0) or marking them
/// close-on-exec; async-signal-safe, so the child side of a fork may call it.
fn close_range(first: libc::c_uint, flags: libc::c_uint) {
    // SAFETY: close_range only closes or flags fds; failure (ENOSYS, EINVAL) leaves them as they
    // were. A caller closing fds owns every fd it closes (see close_fds_from).
    unsafe {
        libc::syscall(libc::SYS_close_range, first, libc::c_uint::MAX, flags);
    }
}
