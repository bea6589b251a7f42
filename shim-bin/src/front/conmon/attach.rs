//! conmon's attach socket, `<bundle>/attach`: SOCK_SEQPACKET, one packet per piece of output,
//! its first byte the stream (2 stdout, 3 stderr) and at most [`MAX_PAYLOAD`] bytes after it,
//! because podman reads into a buffer of 8193 bytes and a longer packet would be cut silently.
//! Input comes as raw packets read [`INPUT_READ`] bytes at a time; an empty read is the client's
//! half-close, after which it still gets output.
//!
//! The socket's path is usually longer than a socket address holds (podman's bundles are deep),
//! so it is bound through `/proc/self/fd/<bundle>/attach`, as podman connects to it.

use crate::common::sys::accept_nonblocking;
use nix::errno::Errno;
use nix::sys::socket::{self, AddressFamily, Backlog, MsgFlags, SockFlag, SockType, UnixAddr};
use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The most output bytes in one packet.
pub const MAX_PAYLOAD: usize = 8192;
/// The input read at once: podman writes up to 32 KiB at a time.
pub const INPUT_READ: usize = 32 * 1024;
/// Connections podman may queue before they are taken.
const BACKLOG: i32 = 10;

/// The stream byte of a packet.
pub fn stream_byte(stream: shim_io::Stream) -> u8 {
    match stream {
        shim_io::Stream::Stdout => 2,
        shim_io::Stream::Stderr => 3,
    }
}

/// The listening socket.
#[derive(Debug)]
pub struct AttachListener {
    fd: OwnedFd,
    path: PathBuf,
}

impl AttachListener {
    /// Binds `<bundle>/attach` (mode 0700), replacing a stale one.
    pub fn bind(bundle: &Path) -> io::Result<AttachListener> {
        let path = bundle.join("attach");
        let dir = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_PATH | nix::libc::O_DIRECTORY)
            .open(bundle)
            .map_err(|e| io::Error::other(format!("{}: {e}", bundle.display())))?;
        let fd = socket::socket(
            AddressFamily::Unix,
            SockType::SeqPacket,
            SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
            None,
        )?;
        nix::sys::stat::fchmod(
            fd.as_raw_fd(),
            nix::sys::stat::Mode::from_bits_truncate(0o700),
        )?;
        let _ = std::fs::remove_file(&path);
        let short = format!("/proc/self/fd/{}/attach", dir.as_raw_fd());
        socket::bind(fd.as_raw_fd(), &UnixAddr::new(short.as_str())?)
            .map_err(|e| io::Error::other(format!("bind {}: {e}", path.display())))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700))?;
        socket::listen(&fd, Backlog::new(BACKLOG).unwrap_or(Backlog::MAXCONN))?;
        Ok(AttachListener { fd, path })
    }

    pub fn raw_fd(&self) -> std::os::fd::RawFd {
        self.fd.as_raw_fd()
    }

    /// The next waiting connection.
    pub fn accept(&self) -> io::Result<Option<AttachClient>> {
        Ok(accept_nonblocking(&self.fd)?.map(AttachClient::new))
    }

    /// The socket goes, with its file.
    pub fn remove(self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// What reading a client gave.
#[derive(Debug, PartialEq, Eq)]
pub enum Read {
    /// Input.
    Input(Vec<u8>),
    /// Nothing now.
    Nothing,
    /// Its input ended (the half-close).
    End,
    /// It is gone.
    Gone,
}

/// One attach connection.
#[derive(Debug)]
pub struct AttachClient {
    fd: OwnedFd,
    /// Packets that did not fit in the socket yet.
    queue: VecDeque<Vec<u8>>,
    queued: usize,
    /// It stopped taking output (a failed write): it gets no more.
    shut: bool,
    /// Its input ended.
    pub input_ended: bool,
    /// Its input is read (not while the container's stdin is full).
    pub reading: bool,
}

impl AttachClient {
    fn new(fd: OwnedFd) -> AttachClient {
        AttachClient {
            fd,
            queue: VecDeque::new(),
            queued: 0,
            shut: false,
            input_ended: false,
            reading: true,
        }
    }

    pub fn raw_fd(&self) -> std::os::fd::RawFd {
        self.fd.as_raw_fd()
    }

    /// Output bytes waiting for the socket.
    pub fn queued(&self) -> usize {
        self.queued
    }

    /// Sends `bytes` of `stream` as packets of at most [`MAX_PAYLOAD`] bytes; what the socket does
    /// not take now waits in the queue.
    pub fn send(&mut self, stream_byte: u8, bytes: &[u8]) {
        if self.shut {
            return;
        }
        for chunk in bytes.chunks(MAX_PAYLOAD) {
            let mut packet = Vec::with_capacity(chunk.len() + 1);
            packet.push(stream_byte);
            packet.extend_from_slice(chunk);
            self.queued += packet.len();
            self.queue.push_back(packet);
        }
        self.flush();
    }

    /// Sends what waits, as far as the socket takes it. A client that fails a write is shut for
    /// writing and gets nothing more, as conmon does.
    pub fn flush(&mut self) {
        while let Some(packet) = self.queue.front() {
            match socket::send(
                self.fd.as_raw_fd(),
                packet,
                MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL,
            ) {
                Ok(_) => {
                    self.queued -= packet.len();
                    self.queue.pop_front();
                }
                Err(Errno::EAGAIN) => return,
                Err(Errno::EINTR) => {}
                Err(_) => {
                    self.shut_output();
                    return;
                }
            }
        }
    }

    /// Whether output waits for the socket.
    pub fn wants_write(&self) -> bool {
        !self.queue.is_empty()
    }

    /// No more output for it (shut for writing, its queue dropped).
    pub fn shut_output(&mut self) {
        self.shut = true;
        self.queue.clear();
        self.queued = 0;
        let _ = socket::shutdown(self.fd.as_raw_fd(), socket::Shutdown::Write);
    }

    /// Whether it is done with: no more output for it and its input ended.
    pub fn finished(&self) -> bool {
        self.shut && self.input_ended
    }

    /// What the loop is to watch it for: its input while it is read, the socket's room while
    /// output waits. (mio takes no empty interest: a client watched for neither is watched for
    /// input, which [`AttachClient::read`] then leaves alone.)
    pub fn interest(&self) -> mio::Interest {
        let read = self.reading && !self.input_ended;
        match (read, self.wants_write()) {
            (true, true) => mio::Interest::READABLE | mio::Interest::WRITABLE,
            (false, true) => mio::Interest::WRITABLE,
            _ => mio::Interest::READABLE,
        }
    }

    /// Reads one packet of input.
    pub fn read(&mut self) -> Read {
        if self.input_ended || !self.reading {
            return Read::Nothing;
        }
        let mut buf = vec![0; INPUT_READ];
        match socket::recv(self.fd.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT) {
            Ok(0) => {
                self.input_ended = true;
                let _ = socket::shutdown(self.fd.as_raw_fd(), socket::Shutdown::Read);
                Read::End
            }
            Ok(n) => {
                buf.truncate(n);
                Read::Input(buf)
            }
            Err(Errno::EAGAIN | Errno::EINTR) => Read::Nothing,
            Err(_) => Read::Gone,
        }
    }

    /// Sends what waits, for at most `within`: the monitor is ending.
    pub fn flush_within(&mut self, within: std::time::Duration) {
        let end = std::time::Instant::now() + within;
        while self.wants_write() && !self.shut {
            let left = end.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return;
            }
            let mut fds = [nix::poll::PollFd::new(
                std::os::fd::AsFd::as_fd(&self.fd),
                nix::poll::PollFlags::POLLOUT,
            )];
            let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
            let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(ms));
            self.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connected SEQPACKET pair: a client (our end) and podman's end.
    fn pair() -> (AttachClient, OwnedFd) {
        let (ours, theirs) = socket::socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        )
        .unwrap();
        (AttachClient::new(ours), theirs)
    }

    fn receive(fd: &OwnedFd) -> Vec<u8> {
        let mut buf = vec![0; 65536];
        let n = socket::recv(fd.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT).unwrap();
        buf.truncate(n);
        buf
    }

    #[test]
    fn output_goes_in_packets_of_at_most_8192_bytes_after_the_stream_byte() {
        let (mut client, podman) = pair();
        client.send(3, &vec![b'x'; MAX_PAYLOAD * 2 + 5]);
        let sizes: Vec<(u8, usize)> = (0..3)
            .map(|_| {
                let packet = receive(&podman);
                (packet[0], packet.len() - 1)
            })
            .collect();
        assert_eq!(sizes, [(3, MAX_PAYLOAD), (3, MAX_PAYLOAD), (3, 5)]);
    }

    #[test]
    fn a_half_close_ends_input_and_output_still_flows() {
        let (mut client, podman) = pair();
        socket::send(podman.as_raw_fd(), b"in", MsgFlags::empty()).unwrap();
        assert_eq!(client.read(), Read::Input(b"in".to_vec()));
        assert_eq!(client.read(), Read::Nothing);
        socket::shutdown(podman.as_raw_fd(), socket::Shutdown::Write).unwrap();
        assert_eq!(client.read(), Read::End);
        client.send(2, b"still");
        assert_eq!(receive(&podman), b"\x02still");
    }

    #[test]
    fn what_the_socket_does_not_take_waits_and_a_gone_client_is_shut() {
        let (mut client, podman) = pair();
        let big = vec![0; MAX_PAYLOAD];
        for _ in 0..1000 {
            client.send(2, &big);
        }
        assert!(client.wants_write() && client.queued() > 0);
        drop(podman);
        client.flush();
        assert!(!client.wants_write());
        assert_eq!(client.queued(), 0);
    }
}
