//! `cargo xtask fuzz [--seconds N] [--target NAME]`: the fuzz targets in tests/fuzz, each run for
//! a bounded time with libFuzzer (through cargo-fuzz, installed from crates.io when missing).
//!
//! cargo-fuzz builds with sanitizer flags that need a nightly compiler; the machine has one stable
//! toolchain, so the build is run with `RUSTC_BOOTSTRAP=1`, which lets it take them. Each target
//! starts from the seeds in `tests/fuzz/corpus/<target>` and grows a scratch copy under
//! tests/fuzz/target, so the tracked seeds stay as they are. A crash leaves its input in
//! `tests/fuzz/artifacts/<target>` and fails the task.

use crate::util::{run_status, workspace_root};
use std::path::Path;
use std::process::Command;

const TARGETS: &[&str] = &[
    "control_request",
    "control_frames",
    "log_decoder",
    "shim_argv",
    "runtime_options",
];

pub fn run(args: &[String]) -> Result<(), String> {
    let mut seconds: u64 = 60;
    let mut only: Option<String> = None;
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--seconds" => {
                seconds = rest
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|&s| (1..=86_400).contains(&s))
                    .ok_or("--seconds takes a whole number from 1 to 86400")?;
            }
            "--target" => {
                let name = rest.next().ok_or("--target takes a target name")?;
                if !TARGETS.contains(&name.as_str()) {
                    return Err(format!(
                        "no fuzz target {name:?} (targets: {})",
                        TARGETS.join(", ")
                    ));
                }
                only = Some(name.clone());
            }
            other => return Err(format!("fuzz: unknown argument {other:?}")),
        }
    }
    ensure_cargo_fuzz()?;
    let dir = workspace_root().join("tests/fuzz");
    for target in TARGETS
        .iter()
        .filter(|t| only.as_deref().is_none_or(|o| o == **t))
    {
        let scratch = dir.join("target/corpus").join(target);
        std::fs::create_dir_all(&scratch).map_err(|e| format!("{}: {e}", scratch.display()))?;
        println!("fuzz: {target} for {seconds} s");
        run_status(
            Command::new("cargo")
                .current_dir(&dir)
                .env("RUSTC_BOOTSTRAP", "1")
                .args(["fuzz", "run", "--fuzz-dir", "."])
                .arg(target)
                .arg(&scratch)
                .arg(Path::new("corpus").join(target))
                .arg("--")
                .arg(format!("-max_total_time={seconds}"))
                .arg("-rss_limit_mb=2048")
                .arg("-print_final_stats=1"),
        )?;
    }
    Ok(())
}

fn ensure_cargo_fuzz() -> Result<(), String> {
    let present = Command::new("cargo")
        .args(["fuzz", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if present {
        return Ok(());
    }
    println!("fuzz: installing cargo-fuzz");
    run_status(Command::new("cargo").args(["install", "cargo-fuzz", "--locked"]))
}
