//! Running commands, and the `test` and `demo` tasks.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The workspace root (xtask lives one level below it).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask sits inside the workspace")
        .to_owned()
}

/// Runs `cmd` with inherited stdio; an error names the command and its status.
pub fn run_status(cmd: &mut Command) -> Result<(), String> {
    let status = cmd
        .status()
        .map_err(|e| format!("{}: {e}", describe(cmd)))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{} failed: {status}", describe(cmd)))
    }
}

fn describe(cmd: &Command) -> String {
    let mut text = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        text.push(' ');
        text.push_str(&arg.to_string_lossy());
    }
    text
}

fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(workspace_root());
    cmd
}

/// `cargo xtask test`: every unit, doc and end-to-end test of the workspace.
pub fn test(extra: &[String]) -> Result<(), String> {
    run_status(cargo().args(["build", "--workspace", "--bins"]))?;
    run_status(cargo().args(["test", "--workspace"]).args(extra))
}

/// `cargo xtask demo`.
pub fn demo() -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| format!("demo: temp dir: {e}"))?;
    let bundle = tether_tests::fixture::BundleSpec::shell(
        "echo hello from a busybox container; uname -a; date",
    )
    .create(dir.path().join("bundle"))
    .map_err(|e| format!("demo: {e}"))?;
    let root = dir.path().join("runc-root");
    println!("demo: runc run {}", bundle.path().display());
    run_status(
        Command::new("runc")
            .arg("--root")
            .arg(&root)
            .args(["run", "--bundle"])
            .arg(bundle.path())
            .arg(format!("tether-demo-{}", std::process::id()))
            .stdin(std::process::Stdio::null()),
    )
}
