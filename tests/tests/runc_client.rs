//! shim-runc against the real runtimes (runc, and crun when installed) and the busybox fixture.

use shim_runc::{
    CreateOptions, DeleteOptions, DirectWait, ExecOptions, KillOptions, ProcessIo, Runc, Status,
};
use std::process::Stdio;
use std::time::Duration;
use tether_tests::fixture::BundleSpec;
use tether_tests::harness::{have_binary, root_or_skip, wait_until, Sandbox};

fn client(sandbox: &Sandbox) -> Runc {
    Runc::new(sandbox.runtime())
        .root(sandbox.runtime_root())
        .log(sandbox.path().join("runtime-log.json"))
        .scratch_dir(sandbox.path())
}

fn quiet_io() -> ProcessIo {
    ProcessIo::new(Stdio::null(), Stdio::null(), Stdio::null())
}

fn lifecycle(runtime: &str) {
    let sandbox = Sandbox::with_runtime("lifecycle", runtime);
    let runc = client(&sandbox);
    let id = sandbox.id();
    let bundle = sandbox.bundle(&BundleSpec::new(["sleep", "1000"]));
    let pid_file = sandbox.path().join("init.pid");
    let options = CreateOptions::new(bundle.path()).pid_file(&pid_file);

    runc.create(id, &options, quiet_io(), &mut DirectWait)
        .unwrap();
    let state = runc.state(id, &mut DirectWait).unwrap();
    assert_eq!(state.status, Status::Created);
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(state.pid, pid);

    runc.start(id, &mut DirectWait).unwrap();
    assert_eq!(
        runc.state(id, &mut DirectWait).unwrap().status,
        Status::Running
    );
    assert!(runc.ps(id, &mut DirectWait).unwrap().contains(&pid));
    let listed = runc.list(&mut DirectWait).unwrap();
    assert_eq!(
        listed.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
        [id]
    );

    runc.pause(id, &mut DirectWait).unwrap();
    assert_eq!(
        runc.state(id, &mut DirectWait).unwrap().status,
        Status::Paused
    );
    runc.resume(id, &mut DirectWait).unwrap();
    assert_eq!(
        runc.state(id, &mut DirectWait).unwrap().status,
        Status::Running
    );

    let out_path = sandbox.path().join("exec.out");
    let out = std::fs::File::create(&out_path).unwrap();
    let mut process = oci_spec::runtime::Process::default();
    process.set_terminal(Some(false));
    process.set_args(Some(vec![
        "sh".into(),
        "-c".into(),
        "echo exec says $((6*7))".into(),
    ]));
    runc.exec(
        id,
        &process,
        &ExecOptions::default(),
        ProcessIo::new(Stdio::null(), out, Stdio::null()),
        &mut DirectWait,
    )
    .unwrap();
    assert_eq!(
        std::fs::read_to_string(&out_path).unwrap(),
        "exec says 42\n"
    );
    let leftover: Vec<_> = std::fs::read_dir(sandbox.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains("-process-"))
        .collect();
    assert!(leftover.is_empty(), "the --process file must be removed");

    runc.kill(id, KillOptions::new(9), &mut DirectWait).unwrap();
    assert!(wait_until(Duration::from_secs(10), || {
        runc.state(id, &mut DirectWait).map(|s| s.status).ok() == Some(Status::Stopped)
    }));
    runc.delete(id, DeleteOptions::default(), &mut DirectWait)
        .unwrap();
    let err = runc.state(id, &mut DirectWait).unwrap_err();
    // runc: "container does not exist"; crun: "error opening file .../status: No such file or directory".
    let text = err.to_string();
    assert!(
        text.contains("does not exist") || text.contains("No such file"),
        "{text}"
    );
}

#[test]
fn runc_lifecycle() {
    if root_or_skip("runc_lifecycle") {
        lifecycle("runc");
    }
}

#[test]
fn crun_lifecycle() {
    if !root_or_skip("crun_lifecycle") {
        return;
    }
    if !have_binary("crun") {
        eprintln!("skipping crun_lifecycle: crun is not installed (cargo xtask deps installs it)");
        return;
    }
    lifecycle("crun");
}

#[test]
fn create_errors_are_clear() {
    if !root_or_skip("create_errors_are_clear") {
        return;
    }
    let sandbox = Sandbox::new("errors");
    let runc = client(&sandbox);
    let id = sandbox.id();

    let missing = CreateOptions::new(sandbox.path().join("no-such-bundle"));
    let err = runc
        .create(id, &missing, quiet_io(), &mut DirectWait)
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with(&format!("runc create {id}: exit status 1: ")),
        "{text}"
    );
    assert!(text.contains("no such file or directory"), "{text}");

    let bundle = sandbox.bundle(&BundleSpec::new(["sleep", "1000"]));
    let options = CreateOptions::new(bundle.path());
    runc.create(id, &options, quiet_io(), &mut DirectWait)
        .unwrap();
    let err = runc
        .create(id, &options, quiet_io(), &mut DirectWait)
        .unwrap_err();
    // runc 1.1's own words; the container's stdio (here /dev/null) never is the message.
    assert_eq!(
        err.to_string(),
        format!("runc create {id}: exit status 1: runc create failed: container with given ID already exists")
    );
}
