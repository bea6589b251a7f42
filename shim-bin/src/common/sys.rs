//! The operating-system calls that need `unsafe`, each behind a safe function: the one module of
//! shim-bin allowed it (see the crate root). Every block says why it is sound.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::os::unix::process::CommandExt;
use std::process::Command;

/// Sends signal number `signal` (1 to 64: real-time ones too, which `nix::sys::signal::Signal`
/// cannot name) to `pid`.
pub fn kill(pid: i32, signal: i32) -> io::Result<()> {
    // SAFETY: kill(2) takes two integers and touches no memory of ours.
    let result = unsafe { nix::libc::kill(pid, signal) };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

nix::ioctl_write_ptr_bad!(
    set_window_size_ioctl,
    nix::libc::TIOCSWINSZ,
    nix::libc::winsize
);
nix::ioctl_read_bad!(
    get_window_size_ioctl,
    nix::libc::TIOCGWINSZ,
    nix::libc::winsize
);

/// Sets a terminal's size.
pub fn set_window(terminal: &impl AsRawFd, rows: u16, cols: u16) {
    let size = nix::libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize from the valid pointer; a non-terminal fd just fails.
    let _ = unsafe { set_window_size_ioctl(terminal.as_raw_fd(), &size) };
}

/// A terminal's size (rows, columns), if `fd` is one.
pub fn window_size(fd: RawFd) -> Option<(u16, u16)> {
    let mut size = nix::libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one winsize to the valid pointer; a non-terminal fd just fails.
    let ok = unsafe { get_window_size_ioctl(fd, &mut size) }.is_ok();
    (ok && size.ws_row > 0).then_some((size.ws_row, size.ws_col))
}

/// Receives the terminal master a runtime sends on its `--console-socket` connection.
pub fn receive_terminal(listener: &UnixListener) -> io::Result<OwnedFd> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    use std::io::IoSliceMut;
    listener.set_nonblocking(true)?;
    let (stream, _) = listener.accept().map_err(|e| {
        if e.kind() == io::ErrorKind::WouldBlock {
            io::Error::other("the runtime did not send a terminal")
        } else {
            e
        }
    })?;
    let mut name = [0u8; 4096];
    let mut iov = [IoSliceMut::new(&mut name)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let message = recvmsg::<()>(
        stream.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    for control in message.cmsgs()? {
        if let ControlMessageOwned::ScmRights(fds) = control {
            if let Some(&fd) = fds.first() {
                // SAFETY: the kernel just installed this fd in our table for us; nothing else owns it.
                return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
    }
    Err(io::Error::other(
        "the runtime's console message carried no fd",
    ))
}

/// The listening socket a parent left at `fd` for this process (containerd's `start` does).
pub fn inherited_listener(fd: RawFd) -> UnixListener {
    // SAFETY: `fd` is the socket our parent passed at a fixed number; nothing else in this process
    // opened or owns it.
    unsafe { UnixListener::from_raw_fd(fd) }
}

/// The fd a parent left at number `fd` for this process (podman's `_OCI_SYNCPIPE` and
/// `_OCI_STARTPIPE`), made close-on-exec; None when nothing is open there. Call it once per number.
pub fn inherited_fd(fd: RawFd) -> Option<OwnedFd> {
    if fd < 3 {
        return None;
    }
    // Open at all: F_GETFD fails with EBADF otherwise.
    nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFD).ok()?;
    // SAFETY: `fd` is open (checked above) and was left to this process by its parent at a
    // number the parent named; nothing in this process opened it, and the caller takes it once.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let _ = nix::fcntl::fcntl(
        owned.as_raw_fd(),
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    );
    Some(owned)
}

/// The next connection waiting on a listening socket of any type (podman's attach socket is
/// SOCK_SEQPACKET, which std's listener does not take), nonblocking and close-on-exec; None when
/// none waits.
pub fn accept_nonblocking(listener: &impl AsRawFd) -> io::Result<Option<OwnedFd>> {
    use nix::sys::socket::{accept4, SockFlag};
    match accept4(
        listener.as_raw_fd(),
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
    ) {
        // SAFETY: accept4 returned a new fd that nothing else in this process owns.
        Ok(fd) => Ok(Some(unsafe { OwnedFd::from_raw_fd(fd) })),
        Err(nix::errno::Errno::EAGAIN) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Whether the calling process is in the parent or the child after [`fork_alone`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forked {
    Parent { child: i32 },
    Child,
}

/// fork(2), for a process that still has one thread (podman's conmon forks once the start byte
/// came: the first process reports the second's pid and exits). Refused with more than one.
pub fn fork_alone() -> io::Result<Forked> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let threads = status
        .lines()
        .find_map(|line| line.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse::<u32>().ok());
    if threads != Some(1) {
        return Err(io::Error::other(
            "fork: the process has more than one thread",
        ));
    }
    // SAFETY: with a single thread (checked above; nothing in this process starts one before this
    // call) no lock can be held by another thread across the fork, so the child may go on running
    // ordinary code, allocation included.
    match unsafe { nix::unistd::fork() }? {
        nix::unistd::ForkResult::Parent { child } => Ok(Forked::Parent {
            child: child.as_raw(),
        }),
        nix::unistd::ForkResult::Child => Ok(Forked::Child),
    }
}

/// Gives the kernel back the heap pages start-up (or a burst of work) freed, and the main thread's
/// stack pages below the caller's frame: a daemon keeps both resident otherwise.
pub fn release_free_memory() {
    // First: the look at the stack's bounds allocates, and frees what the trim gives back.
    release_unused_stack();
    // SAFETY: malloc_trim only returns free memory to the kernel; it has no preconditions.
    unsafe {
        nix::libc::malloc_trim(0);
    }
}

/// Stack left alone below the caller's frame: this function's own frames, the madvise call's, a
/// signal handler's, and the red zone.
const STACK_MARGIN: usize = 4 << 10;

/// Gives back the main thread's stack pages deeper than the caller (what start-up or a burst of
/// work touched once): the loop runs about 24 KiB deep, but a runtime call or the state record
/// went 20 KiB deeper, and those pages stay resident for the daemon's life. They are faulted in
/// again, zeroed, when a call goes that deep. Nothing on another thread's stack is touched.
#[inline(never)]
fn release_unused_stack() {
    let marker = 0u8;
    let here = std::hint::black_box(&marker) as *const u8 as usize;
    let Some((low, high)) = main_stack() else {
        return;
    };
    if !(low..high).contains(&here) {
        return; // not the main thread
    }
    let end = (here - STACK_MARGIN) & !(page_size() - 1);
    if end <= low {
        return;
    }
    // SAFETY: [low, end) lies inside the main thread's stack mapping (read from /proc/self/maps
    // just now) and below this frame by STACK_MARGIN: no live frame of this thread is there, and
    // no other thread uses this stack. MADV_DONTNEED leaves the mapping; its pages read as zero
    // when next touched, as a stack's unwritten pages do.
    unsafe {
        nix::libc::madvise(
            low as *mut nix::libc::c_void,
            end - low,
            nix::libc::MADV_DONTNEED,
        );
    }
}

/// The main thread's stack mapping, `[low, high)`.
fn main_stack() -> Option<(usize, usize)> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    let line = maps.lines().find(|line| line.ends_with("[stack]"))?;
    let (low, rest) = line.split_once('-')?;
    let high = rest.split_whitespace().next()?;
    Some((
        usize::from_str_radix(low, 16).ok()?,
        usize::from_str_radix(high, 16).ok()?,
    ))
}

fn page_size() -> usize {
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .and_then(|size| usize::try_from(size).ok())
        .unwrap_or(4096)
}

/// In `command`'s child: the fds `handed` become 3, 4, ... in order (everything else stays
/// close-on-exec).
pub fn hand_fds(command: &mut Command, handed: [RawFd; 3]) {
    // SAFETY: between fork and exec only fcntl and dup2, which are async-signal-safe; nothing is
    // allocated.
    unsafe {
        command.pre_exec(move || {
            // Out of the way of 3..=5 first, so no dup2 below overwrites a source.
            let mut high = [0; 3];
            for (slot, fd) in high.iter_mut().zip(handed) {
                *slot = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(10))?;
            }
            for (target, fd) in (3..).zip(high) {
                nix::unistd::dup2(fd, target)?;
            }
            Ok(())
        });
    }
}

/// In `command`'s child: a session of its own, and `fd` handed on as `target`.
pub fn detach_with_fd(command: &mut Command, fd: RawFd, target: RawFd) {
    // SAFETY: between fork and exec only setsid, dup2 and fcntl, which are async-signal-safe.
    unsafe {
        command.pre_exec(move || {
            nix::unistd::setsid()?;
            if fd == target {
                nix::fcntl::fcntl(
                    fd,
                    nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
                )?;
            } else {
                nix::unistd::dup2(fd, target)?;
            }
            Ok(())
        });
    }
}

/// Blocks every signal in this process (single-threaded: the init), so that [`wait_signal`]
/// takes each one in turn. A child started with `std::process::Command` begins with none
/// blocked again.
pub fn block_all_signals() -> io::Result<()> {
    // SAFETY: sigfillset fills the set we own; sigprocmask reads it and writes no memory of ours.
    let result = unsafe {
        let mut all: nix::libc::sigset_t = std::mem::zeroed();
        nix::libc::sigfillset(&mut all);
        nix::libc::sigprocmask(nix::libc::SIG_SETMASK, &all, std::ptr::null_mut())
    };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The number of the next pending signal (any, real-time ones too), once one is pending.
pub fn wait_signal() -> io::Result<i32> {
    loop {
        // SAFETY: sigfillset fills the set we own; sigwaitinfo reads it and, given a null info
        // pointer, writes nothing.
        let signal = unsafe {
            let mut all: nix::libc::sigset_t = std::mem::zeroed();
            nix::libc::sigfillset(&mut all);
            nix::libc::sigwaitinfo(&all, std::ptr::null_mut())
        };
        if signal > 0 {
            return Ok(signal);
        }
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
}

/// In `command`'s child (the init's command): a process group of its own, which becomes the
/// terminal's foreground group when its parent's group was (so Ctrl-C on the container's
/// terminal reaches it, as it would without an init in between); then no signal blocked, as the
/// init has them all.
pub fn prepare_init_child(command: &mut Command) {
    // SAFETY: between fork and exec only getpgrp, setpgid, tcgetpgrp, tcsetpgrp, sigemptyset and
    // sigprocmask, which are async-signal-safe; nothing is allocated.
    unsafe {
        command.pre_exec(|| {
            let before = nix::unistd::getpgrp();
            nix::unistd::setpgid(nix::unistd::Pid::from_raw(0), nix::unistd::Pid::from_raw(0))?;
            let stdin = std::os::fd::BorrowedFd::borrow_raw(0);
            if nix::unistd::tcgetpgrp(stdin) == Ok(before) {
                // A background group may take the terminal: SIGTTOU is still blocked here.
                let _ = nix::unistd::tcsetpgrp(stdin, nix::unistd::getpgrp());
            }
            let mut none: nix::libc::sigset_t = std::mem::zeroed();
            nix::libc::sigemptyset(&mut none);
            if nix::libc::sigprocmask(nix::libc::SIG_SETMASK, &none, std::ptr::null_mut()) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}
