//! Exit-status handling, error extraction and child set-up, with small scripts standing in for the
//! runtime (the real runtime cannot be made to fail in these ways on demand).

use shim_runc::{DirectWait, Error, KillOptions, Runc};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Mutex;

/// Writing an executable while another test thread forks can leave the new file's write fd open in
/// that child for a moment (ETXTBSY on exec). Every test here writes and runs under this lock.
static SPAWN_LOCK: Mutex<()> = Mutex::new(());

fn lock() -> std::sync::MutexGuard<'static, ()> {
    SPAWN_LOCK
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

struct Fake {
    dir: tempfile::TempDir,
}

impl Fake {
    fn new() -> Self {
        Fake {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// A runtime named `fake-runc` running `body` (with "$@" available).
    fn runtime(&self, body: &str) -> Runc {
        let path = self.dir.path().join("fake-runc");
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        Runc::new(path)
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("runtime-log.json")
    }
}

/// A body that finds `--log FILE` in its arguments and appends `line` to it.
fn write_to_log(line: &str) -> String {
    format!(
        r#"while [ $# -gt 0 ]; do if [ "$1" = --log ]; then log=$2; fi; shift; done
echo '{line}' >> "$log""#
    )
}

#[test]
fn failure_carries_the_runtimes_last_logged_error() {
    let _lock = lock();
    let fake = Fake::new();
    let body = format!(
        "{}\necho 'container output must never be the message' >&2\nexit 1",
        write_to_log(r#"{"level":"error","msg":"container with id exists: web","time":"t"}"#)
    );
    let runc = fake.runtime(&body).log(fake.log());
    let err = runc.start("web", &mut DirectWait).unwrap_err();
    assert_eq!(
        err.to_string(),
        "fake-runc start web: exit status 1: container with id exists: web"
    );
    assert_eq!(err.runtime_message(), Some("container with id exists: web"));
}

#[test]
fn an_older_error_in_the_log_is_not_reported_again() {
    let _lock = lock();
    let fake = Fake::new();
    std::fs::write(
        fake.log(),
        "{\"level\":\"error\",\"msg\":\"stale\",\"time\":\"t\"}\n",
    )
    .unwrap();
    let runc = fake.runtime("exit 2").log(fake.log());
    let err = runc.pause("web", &mut DirectWait).unwrap_err();
    assert_eq!(
        err.to_string(),
        "fake-runc pause web: exit status 2: no error message from the runtime"
    );
}

#[test]
fn without_a_log_the_last_stderr_line_is_the_message() {
    let _lock = lock();
    let fake = Fake::new();
    let runc =
        fake.runtime("echo 'first' >&2; echo 'container \"web\" does not exist' >&2; exit 1");
    let err = runc
        .kill("web", KillOptions::new(9), &mut DirectWait)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "fake-runc kill web: exit status 1: container \"web\" does not exist"
    );
}

#[test]
fn killed_runtime_is_reported_by_signal() {
    let _lock = lock();
    let fake = Fake::new();
    let runc = fake.runtime("kill -KILL $$");
    let err = runc.resume("web", &mut DirectWait).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("fake-runc resume web: killed by SIGKILL"),
        "{err}"
    );
}

#[test]
fn missing_runtime_is_its_own_error() {
    let runc = Runc::new("/nonexistent/runc");
    let err = runc.state("web", &mut DirectWait).unwrap_err();
    assert!(matches!(err, Error::RuntimeNotFound { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "runc state web: runtime not found: /nonexistent/runc"
    );
}

#[test]
fn state_output_is_parsed_from_stdout_only() {
    let _lock = lock();
    let fake = Fake::new();
    let runc = fake.runtime(
        r#"echo 'noise on stderr' >&2
echo '{"ociVersion":"1.0.2","id":"web","pid":7,"status":"paused","bundle":"/b","rootfs":"/b/rootfs","created":"c","owner":""}'"#,
    );
    let state = runc.state("web", &mut DirectWait).unwrap();
    assert_eq!(state.pid, 7);
    assert_eq!(state.status, shim_runc::Status::Paused);
}

#[test]
fn garbage_output_is_a_clear_error() {
    let _lock = lock();
    let fake = Fake::new();
    let runc = fake.runtime("echo 'not json'");
    let err = runc.ps("web", &mut DirectWait).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("fake-runc ps web: unexpected output:"),
        "{err}"
    );
}

#[test]
fn child_starts_with_default_signals_and_no_stray_fds() {
    use nix::sys::signal::{pthread_sigmask, signal, SigHandler, SigSet, SigmaskHow, Signal};
    let _lock = lock();
    // Make the parent's state as hostile as a daemon's: SIGPIPE (Rust's default) and SIGUSR1
    // ignored, SIGCHLD blocked, and an fd without O_CLOEXEC at 77.
    // SAFETY: SIG_IGN installs no handler code.
    unsafe { signal(Signal::SIGUSR1, SigHandler::SigIgn) }.unwrap();
    let mut chld = SigSet::empty();
    chld.add(Signal::SIGCHLD);
    pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&chld), None).unwrap();
    let file = std::fs::File::open("/dev/null").unwrap();
    let stray = nix::unistd::dup2(std::os::fd::AsRawFd::as_raw_fd(&file), 77).unwrap();

    let fake = Fake::new();
    let runc = fake.runtime(
        r#"ign=$(grep SigIgn /proc/$$/status | cut -f2)
blk=$(grep SigBlk /proc/$$/status | cut -f2)
fds=$(ls /proc/$$/fd | tr '\n' ' ')
echo "{\"ign\":\"$ign\",\"blk\":\"$blk\",\"fds\":\"$fds\"}""#,
    );
    let report = runc.features(&mut DirectWait);
    pthread_sigmask(SigmaskHow::SIG_UNBLOCK, Some(&chld), None).unwrap();
    nix::unistd::close(stray).unwrap();
    let report = report.unwrap();
    assert_eq!(report["ign"], "0000000000000000", "{report}");
    assert_eq!(report["blk"], "0000000000000000", "{report}");
    let fds = report["fds"].as_str().unwrap();
    assert!(
        !fds.split_whitespace().any(|fd| fd == "77"),
        "fd 77 leaked: {fds}"
    );
}
