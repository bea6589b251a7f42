//! `tether run --init`: a tiny init as the container's PID 1. It runs the command as its child,
//! passes every signal it gets on to it, reaps whatever is reparented to it, and exits with the
//! command's code (128+N when signal N killed it), as docker's `--init` does.
//!
//! Why: the kernel delivers to a PID 1 only the signals it has a handler for, so a shell or an
//! httpd as PID 1 ignores `tether stop`'s TERM and is killed after the grace period (137). Under
//! the init, TERM reaches it as it would anywhere else (143 at once), and orphans do not pile up
//! as zombies. It is tether's own binary, bind-mounted read-only at [`PATH`]; the name it is run
//! by selects this mode, as `containerd-shim-tether-v2` selects containerd's shim.
//!
//! ```text
//! tether run --init --rootfs ./rootfs web -- sh -c 'httpd -f'
//! # in the container: PID 1 /dev/tether-init sh -c 'httpd -f', the shell its child
//! ```

use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::process::Command;

/// Where the init is mounted in the container: on `/dev`, the runtime's own tmpfs, so nothing is
/// made in the rootfs.
pub const PATH: &str = "/dev/tether-init";

/// Whether this process was run as the init.
pub fn invoked_as_init(argv0: &str) -> bool {
    std::path::Path::new(argv0).file_name() == std::path::Path::new(PATH).file_name()
}

/// Runs `command` as the init's child; returns the init's exit code.
pub fn main(command: &[String]) -> u8 {
    let Some((program, args)) = command.split_first() else {
        eprintln!("tether-init: no command to run");
        return 125;
    };
    if let Err(e) = crate::common::sys::block_all_signals() {
        eprintln!("tether-init: block signals: {e}");
        return 125;
    }
    let mut child = Command::new(program);
    child.args(args);
    crate::common::sys::prepare_init_child(&mut child);
    let child = match child.spawn() {
        Ok(child) => Pid::from_raw(child.id() as i32),
        Err(e) => {
            eprintln!("tether-init: {program}: {e}");
            // As a shell says it: 127 not found, 126 found but not run.
            return if e.kind() == std::io::ErrorKind::NotFound {
                127
            } else {
                126
            };
        }
    };
    loop {
        let signal = match crate::common::sys::wait_signal() {
            Ok(signal) => signal,
            Err(e) => {
                eprintln!("tether-init: wait for signals: {e}");
                return 125;
            }
        };
        if signal != nix::libc::SIGCHLD {
            // Gone already is no error: its exit is pending as SIGCHLD.
            let _ = crate::common::sys::kill(child.as_raw(), signal);
            continue;
        }
        if let Some(code) = reap(child) {
            return code;
        }
    }
}

/// Reaps every child that has exited; the command's exit code once it is among them.
fn reap(command: Pid) -> Option<u8> {
    let mut code = None;
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, status)) if pid == command => code = Some(status as u8),
            Ok(WaitStatus::Signaled(pid, signal, _)) if pid == command => {
                code = Some(128 + signal as u8)
            }
            Ok(WaitStatus::StillAlive) | Err(_) => return code,
            Ok(_) => {}
        }
    }
}

/// This binary, to be mounted as the container's init: it must be linked statically, for the
/// container's rootfs has no C library of the host's. The error is one line for the user.
pub fn binary() -> Result<std::path::PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("--init: find tether's binary: {e}"))?;
    let image = std::fs::read(&exe).map_err(|e| format!("--init: {}: {e}", exe.display()))?;
    match needs_a_loader(&image) {
        Some(false) => Ok(exe),
        Some(true) => Err(format!(
            "--init: {} is linked dynamically and cannot run in a container; `cargo xtask install` builds tether statically",
            exe.display()
        )),
        None => Err(format!("--init: {} is not an ELF executable of 64 bits", exe.display())),
    }
}

/// Whether a 64-bit little-endian ELF image names a program interpreter (the dynamic loader);
/// `None` when it is no such image.
fn needs_a_loader(image: &[u8]) -> Option<bool> {
    const PT_INTERP: u32 = 3;
    if image.get(..6)? != b"\x7fELF\x02\x01" {
        return None;
    }
    let u16_at = |at: usize| Some(u16::from_le_bytes(image.get(at..at + 2)?.try_into().ok()?));
    let u32_at = |at: usize| Some(u32::from_le_bytes(image.get(at..at + 4)?.try_into().ok()?));
    let u64_at = |at: usize| Some(u64::from_le_bytes(image.get(at..at + 8)?.try_into().ok()?));
    let table = usize::try_from(u64_at(0x20)?).ok()?;
    let entry_size = usize::from(u16_at(0x36)?);
    let entries = usize::from(u16_at(0x38)?);
    for n in 0..entries {
        if u32_at(table.checked_add(n.checked_mul(entry_size)?)?)? == PT_INTERP {
            return Some(true);
        }
    }
    Some(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_name_it_is_run_by_selects_the_init() {
        assert!(invoked_as_init("/dev/tether-init"));
        assert!(invoked_as_init("tether-init"));
        assert!(!invoked_as_init("/usr/bin/tether"));
        assert!(!invoked_as_init("/dev/tether-init2"));
    }

    #[test]
    fn a_loader_is_found_in_the_program_headers() {
        // The test binary itself is linked dynamically.
        let image = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert_eq!(needs_a_loader(&image), Some(true));
        let busybox = std::path::Path::new("/bin/busybox");
        if busybox.exists() {
            // busybox-static.
            assert_eq!(
                needs_a_loader(&std::fs::read(busybox).unwrap()),
                Some(false)
            );
        }
        assert_eq!(needs_a_loader(b"#!/bin/sh\n"), None);
        // Headers that point past the end are no image, not a panic.
        let mut cut = image[..64].to_vec();
        cut[0x38] = 0xff;
        assert_eq!(needs_a_loader(&cut), None);
    }
}
