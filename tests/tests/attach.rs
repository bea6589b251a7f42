//! `tether run -i/-t` and `tether attach` against real runc.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::Stdio;
use std::time::Duration;
use tether_tests::fixture::BundleSpec;
use tether_tests::harness::{root_or_skip, wait_until, Sandbox};

macro_rules! needs_root {
    ($name:literal) => {
        if !root_or_skip($name) {
            return;
        }
    };
}

fn log_len(sandbox: &Sandbox, id: &str) -> u64 {
    std::fs::metadata(sandbox.state_dir().join(id).join("container.log")).map_or(0, |m| m.len())
}

#[test]
fn input_reaches_the_container_and_every_client_sees_the_output() {
    needs_root!("input_reaches_the_container_and_every_client_sees_the_output");
    let sandbox = Sandbox::new("attach");
    let id = sandbox.id();
    let bundle = sandbox.bundle(&BundleSpec::shell(
        "while read line; do echo \"got $line\"; done; echo bye; exit 4",
    ));
    sandbox.start(id, &bundle, &["-i"]);
    // A watcher that only reads.
    let watcher = sandbox
        .tether()
        .args(["attach", "--no-stdin", id])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the daemon has both clients before typing (the watcher sees output from the
    // moment it attached).
    let mut writer = sandbox
        .tether()
        .args(["attach", id])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let shim_log = sandbox.state_dir().join(id).join("shim.log");
    assert!(wait_until(Duration::from_secs(10), || {
        std::fs::read_to_string(&shim_log).is_ok_and(|t| t.contains("(2 attached)"))
    }));
    let mut stdin = writer.stdin.take().unwrap();
    stdin.write_all(b"hello\nworld\n").unwrap();
    drop(stdin); // EOF closes the container's stdin: the loop ends.
    let written = writer.wait_with_output().unwrap();
    let watched = watcher.wait_with_output().unwrap();
    let expected = "got hello\ngot world\nbye\n";
    assert_eq!(String::from_utf8_lossy(&written.stdout), expected);
    assert_eq!(String::from_utf8_lossy(&watched.stdout), expected);
    assert_eq!(written.status.code(), Some(4));
    assert_eq!(watched.status.code(), Some(4));
    let logs = sandbox.tether_output(&["logs", id]);
    assert_eq!(String::from_utf8_lossy(&logs.stdout), expected);
}

#[test]
fn a_stalled_client_never_blocks_the_container_or_its_log() {
    needs_root!("a_stalled_client_never_blocks_the_container_or_its_log");
    let sandbox = Sandbox::new("stall");
    let id = sandbox.id();
    let bundle = sandbox.bundle(&BundleSpec::shell(
        "while true; do echo 'a line of output that keeps coming, quite a lot of it, all the time'; done",
    ));
    sandbox.start(id, &bundle, &[]);
    // Attach by hand and never read a byte.
    let socket = sandbox.state_dir().join(id).join("control.sock");
    let mut stalled = UnixStream::connect(&socket).unwrap();
    stalled.write_all(b"{\"op\":\"attach\"}\n").unwrap();
    let start = log_len(&sandbox, id);
    // Far more than the client's 1 MiB allowance, and more than the socket buffers hold.
    assert!(
        wait_until(Duration::from_secs(30), || log_len(&sandbox, id)
            > start + 32 * 1024 * 1024),
        "the log stopped growing at {} bytes",
        log_len(&sandbox, id)
    );
    // The client was cut off with a notice (after whatever output it had been sent).
    stalled
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut received = Vec::new();
    let _ = stalled.read_to_end(&mut received);
    let text = String::from_utf8_lossy(&received);
    assert!(
        text.contains("fell more than"),
        "no cut-off notice in {} bytes",
        received.len()
    );
    let state = sandbox.tether_output(&["state", id]);
    assert!(String::from_utf8_lossy(&state.stdout).contains("\"running\""));
    assert!(sandbox.tether_output(&["rm", "-f", id]).status.success());
}
