//! What docker's and podman's command lines share, and the cases written once for both: the same
//! user-level behaviour is asked of tether under either engine.

use super::{expect, text, wait_output, Check};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// An engine's command line (`docker`, `podman`) as the cases drive it.
pub(crate) trait EngineCli {
    /// The command, set up for the engine under test (its socket, its configuration).
    fn command(&self) -> Command;

    /// `ENGINE run OPTIONS IMAGE COMMAND` with what the run needs (a runtime, a network).
    fn run(&self, options: &[&str], command: &[&str]) -> Result<Output, String>;

    /// Removes a container, whatever its state.
    fn remove(&self, name: &str);

    fn output(&self, args: &[&str]) -> Result<Output, String> {
        self.command()
            .args(args)
            .output()
            .map_err(|e| format!("{args:?}: {e}"))
    }

    /// `ENGINE ARGS`, which must succeed; its stdout.
    fn ok(&self, args: &[&str]) -> Result<String, String> {
        let output = self.output(args)?;
        if output.status.success() {
            Ok(text(&output.stdout))
        } else {
            Err(format!(
                "{}: {}: {}",
                args.join(" "),
                output.status,
                text(&output.stderr).trim()
            ))
        }
    }

    fn inspect(&self, name: &str, format: &str) -> Result<String, String> {
        Ok(self
            .ok(&["inspect", "--format", format, name])?
            .trim()
            .to_owned())
    }

    /// `ENGINE import - IMAGE` of a root filesystem, as a tar stream.
    fn import(&self, rootfs: &std::path::Path, image: &str) -> Check {
        let tar = Command::new("tar")
            .arg("-C")
            .arg(rootfs)
            .args(["-c", "."])
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("tar: {e}"))?;
        let output = self
            .command()
            .args(["import", "-", image])
            .stdin(tar.stdout.expect("piped"))
            .output()
            .map_err(|e| format!("import: {e}"))?;
        expect(output.status.success(), || {
            format!("import: {}", text(&output.stderr))
        })
    }

    /// `ENGINE run -d --name NAME … COMMAND`, which must succeed.
    fn run_detached(&self, name: &str, command: &[&str]) -> Check {
        let output = self.run(&["-d", "--name", name], command)?;
        expect(output.status.success(), || {
            format!("run -d: {}", text(&output.stderr).trim())
        })
    }
}

/// `run -d`, then `logs -f` started while it runs sees the whole output and ends with the
/// container; `logs` keeps stdout and stderr apart.
pub(super) fn logs_and_follow(engine: &impl EngineCli, name: &str) -> Check {
    engine.run_detached(
        name,
        &["sh", "-c", "echo one; echo two >&2; sleep 1; echo three"],
    )?;
    let follow = engine
        .command()
        .args(["logs", "-f", name])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let followed = wait_output(follow, Duration::from_secs(30))?;
    expect(text(&followed.stdout) == "one\nthree\n", || {
        format!("logs -f stdout {:?}", text(&followed.stdout))
    })?;
    let output = engine.output(&["logs", name])?;
    expect(text(&output.stdout) == "one\nthree\n", || {
        format!("logs stdout {:?}", text(&output.stdout))
    })?;
    expect(text(&output.stderr) == "two\n", || {
        format!("logs stderr {:?}", text(&output.stderr))
    })?;
    engine.remove(name);
    Ok(())
}

/// `stop -t 2` of a process that ignores TERM: the grace is kept, then KILL (137).
pub(super) fn stop_after_the_grace(engine: &impl EngineCli, name: &str) -> Check {
    engine.run_detached(
        name,
        &["sh", "-c", "trap '' TERM; while :; do sleep 0.1; done"],
    )?;
    let started = Instant::now();
    engine.ok(&["stop", "-t", "2", name])?;
    let took = started.elapsed();
    expect(took >= Duration::from_secs(2), || {
        format!("stopped after {took:?}: the grace was not kept")
    })?;
    let code = engine.inspect(name, "{{.State.ExitCode}}")?;
    expect(code == "137", || format!("exit code {code}, not 137"))?;
    engine.remove(name);
    Ok(())
}

/// `kill`, then `wait` prints 137.
pub(super) fn kill_then_wait(engine: &impl EngineCli, name: &str) -> Check {
    engine.run_detached(name, &["sleep", "300"])?;
    engine.ok(&["kill", name])?;
    let code = engine.ok(&["wait", name])?;
    expect(code.trim() == "137", || format!("wait printed {code:?}"))
}
