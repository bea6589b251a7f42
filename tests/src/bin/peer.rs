//! `peer SOCKET`: a client of a unix stream socket for tests that play another user. Sends its
//! stdin and copies the answer to stdout until the other end closes the connection, or, once
//! something came, until 500 ms pass without more (nothing at all within 10 s is a timeout).
//! Exits 0 then, 2 when it could not connect, 3 on a timeout.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

fn main() {
    let Some(socket) = std::env::args().nth(1) else {
        eprintln!("usage: peer SOCKET");
        std::process::exit(64);
    };
    let mut stream = match UnixStream::connect(&socket) {
        Ok(stream) => stream,
        Err(e) => {
            eprintln!("peer: connect {socket}: {e}");
            std::process::exit(2);
        }
    };
    let mut request = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut request);
    // The other end may have closed already: what it said is still to be read.
    let _ = stream.write_all(&request);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                answer.extend_from_slice(&buf[..n]);
                let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) if !answer.is_empty() && e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => {
                eprintln!("peer: read: {e}");
                let _ = std::io::stdout().write_all(&answer);
                std::process::exit(3);
            }
        }
    }
    let _ = std::io::stdout().write_all(&answer);
}
