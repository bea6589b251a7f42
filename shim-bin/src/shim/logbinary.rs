//! `binary://` stdio URIs: a logging binary (nerdctl's, or docker's logging plugins through it) that
//! reads the process's output, started the way containerd's own shim starts it so the same binaries
//! work: `binary:///path?key=value` runs `/path key value` with only `CONTAINER_ID` and
//! `CONTAINER_NAMESPACE` in its environment, stdout on fd 3, stderr on fd 4, and fd 5 to close (or
//! write to) once it is ready. tether relays into those pipes like into a fifo: the container never
//! writes to the binary directly, so a slow binary cannot block it.

use shim_io::fdio::pipe;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd};
use std::process::{Command, Stdio};

/// How long the binary may take to say it is ready.
const READY_TIMEOUT_MS: u16 = 10_000;

/// Whether `uri` names a logging binary.
pub fn is_binary_uri(uri: &str) -> bool {
    uri.starts_with("binary://")
}

/// The program and its arguments from a `binary://` URI.
pub fn command_line(uri: &str) -> io::Result<(String, Vec<String>)> {
    let invalid = |why: &str| io::Error::new(io::ErrorKind::InvalidInput, format!("{uri}: {why}"));
    let rest = uri
        .strip_prefix("binary://")
        .ok_or_else(|| invalid("not a binary:// URI"))?;
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let path = unescape(path);
    if !path.starts_with('/') {
        return Err(invalid("the logging binary needs an absolute path"));
    }
    let mut args = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        args.push(unescape(key));
        args.push(unescape(value));
    }
    Ok((path, args))
}

/// URI query unescaping: `%XX` and `+` for a space.
fn unescape(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(high), Some(low)) => {
                    out.push(high * 16 + low);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(digit: u8) -> Option<u8> {
    (digit as char).to_digit(16).map(|d| d as u8)
}

/// Starts the logging binary for one process; returns the write ends of its stdout and stderr
/// pipes once it said it is ready. Its exit is collected by the shim's reaper.
pub fn spawn(uri: &str, id: &str, namespace: &str) -> io::Result<(File, File)> {
    let (program, args) = command_line(uri)?;
    let (stdout_read, stdout_write) = pipe()?;
    let (stderr_read, stderr_write) = pipe()?;
    let (ready_read, ready_write) = pipe()?;
    let mut command = Command::new(&program);
    command
        .args(&args)
        .env_clear()
        .env("CONTAINER_ID", id)
        .env("CONTAINER_NAMESPACE", namespace)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    shim_runc::prepare_child(&mut command);
    let handed = [
        stdout_read.as_raw_fd(),
        stderr_read.as_raw_fd(),
        ready_write.as_raw_fd(),
    ];
    // Only 3, 4 and 5 reach the binary: everything else is close-on-exec.
    crate::common::sys::hand_fds(&mut command, handed);
    let mut child = command
        .spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("logging binary {program}: {e}")))?;
    drop((stdout_read, stderr_read, ready_write));
    let mut fds = [nix::poll::PollFd::new(
        ready_read.as_fd(),
        nix::poll::PollFlags::POLLIN,
    )];
    let ready = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(READY_TIMEOUT_MS))
        .map_err(io::Error::from)?;
    if ready == 0 {
        let _ = child.kill();
        return Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("logging binary {program} did not get ready within 10 s"),
        ));
    }
    let mut byte = [0u8; 1];
    let _ = File::from(ready_read).read(&mut byte);
    Ok((File::from(stdout_write), File::from(stderr_write)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_pairs_become_arguments_as_containerd_passes_them() {
        let (program, args) = command_line(
            "binary:///usr/local/bin/nerdctl?_NERDCTL_INTERNAL_LOGGING=%2Fvar%2Flib%2Fnerdctl&flag",
        )
        .unwrap();
        assert_eq!(program, "/usr/local/bin/nerdctl");
        assert_eq!(
            args,
            ["_NERDCTL_INTERNAL_LOGGING", "/var/lib/nerdctl", "flag", ""]
        );
    }

    #[test]
    fn relative_paths_are_refused() {
        let error = command_line("binary://logger").unwrap_err();
        assert!(error.to_string().contains("absolute path"), "{error}");
    }
}
