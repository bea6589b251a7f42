//! What every nonblocking fd of the copier needs: close-on-exec pipes to start from, being made
//! nonblocking, and being written as far as it takes right now.

use std::io::{self, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

/// A pipe whose ends are close-on-exec (handed to a child only through its stdio or a dup2).
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?)
}

/// Sets O_NONBLOCK.
pub fn set_nonblocking(fd: &impl AsRawFd) -> io::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let flags = OFlag::from_bits_truncate(fcntl(fd.as_raw_fd(), FcntlArg::F_GETFL)?);
    fcntl(fd.as_raw_fd(), FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok(())
}

/// Writes as much of `data` as `writer` takes now (0 when it is full). An error means the other
/// side is gone (EPIPE, EIO): nothing more can be delivered.
pub fn write_some(writer: &mut impl Write, data: &[u8]) -> io::Result<usize> {
    let mut written = 0;
    while written < data.len() {
        match writer.write(&data[written..]) {
            Ok(0) => break,
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(written)
}

/// Writes as much of `queue` as `writer` takes now and removes it from the queue. An error means
/// the other side is gone.
pub fn write_queued(writer: &mut impl Write, queue: &mut Vec<u8>) -> io::Result<()> {
    let written = write_some(writer, queue)?;
    queue.drain(..written);
    Ok(())
}

/// Writes `queue` out, waiting for a slow reader until `deadline` (a daemon's last answers before
/// it exits); what is not taken by then, or by a reader that is gone, is dropped.
pub fn write_queued_until(writer: &mut impl Write, queue: &mut Vec<u8>, deadline: Instant) {
    while !queue.is_empty() && Instant::now() < deadline {
        if write_queued(writer, queue).is_err() {
            return;
        }
        if !queue.is_empty() {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queue_loses_what_was_written_and_keeps_the_rest() {
        let (read_end, write_end) = pipe().unwrap();
        set_nonblocking(&write_end).unwrap();
        let mut writer = std::fs::File::from(write_end);
        let mut queue = vec![7u8; 1 << 20]; // more than a pipe holds
        write_queued(&mut writer, &mut queue).unwrap();
        let kept = queue.len();
        assert!(kept > 0 && kept < 1 << 20, "kept {kept}");
        drop(read_end);
        assert!(
            write_queued(&mut writer, &mut queue).is_err(),
            "the reader is gone"
        );
        let soon = Instant::now() + Duration::from_secs(5);
        write_queued_until(&mut writer, &mut queue, soon); // returns at once: no reader
        assert_eq!(queue.len(), kept);
    }
}
