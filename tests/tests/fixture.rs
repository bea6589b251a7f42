//! The fixture itself: it is quick to make, and real runc runs it.

use std::time::{Duration, Instant};
use tether_tests::fixture::BundleSpec;
use tether_tests::harness::{root_or_skip, Sandbox};

#[test]
fn bundles_are_quick_to_make() {
    let dir = tempfile::tempdir().unwrap();
    // The first bundle may build the machine-wide busybox cache.
    BundleSpec::shell("true")
        .create(dir.path().join("first"))
        .unwrap();
    const N: u32 = 20;
    let start = Instant::now();
    for i in 0..N {
        BundleSpec::shell("true")
            .create(dir.path().join(format!("b{i}")))
            .unwrap();
    }
    let per_bundle = start.elapsed() / N;
    println!(
        "fixture: {:.2} ms per bundle (mean of {N})",
        per_bundle.as_secs_f64() * 1e3
    );
    // Not a benchmark: a guard against the fixture becoming a copy of the rootfs per test.
    assert!(
        per_bundle < Duration::from_millis(500),
        "{per_bundle:?} per bundle"
    );
}

#[test]
fn runc_runs_echo_hello() {
    if !root_or_skip("runc_runs_echo_hello") {
        return;
    }
    let sandbox = Sandbox::new("echo");
    let bundle = sandbox.bundle(&BundleSpec::new(["echo", "hello"]));
    let output = sandbox
        .runtime_command()
        .args(["run", "--bundle"])
        .arg(bundle.path())
        .arg(sandbox.id())
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "runc run: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout), "hello\n");
}
