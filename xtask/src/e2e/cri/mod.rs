//! `cargo xtask e2e cri [--engine 1.6|1.7|2.1|all] [--shim tether|runc|both] [--only-floods]`:
//! containerd with its
//! CRI plugin on drives pods through the calls the kubelet makes, with tether's shim (the runtime
//! handler docs/kubernetes.md configures) and with containerd-shim-runc-v2, and prints the
//! timings of both.
//!
//! The CRI client is generated from the CRI protos at build time (`k8s-cri`), which needs protoc;
//! xtask builds without it (it is what installs it), so this suite lives behind the `cri`
//! feature, and `e2e cri` in an xtask built without the feature runs itself again through cargo
//! with it on.

#[cfg(feature = "cri")]
mod client;
mod kubelet_log;
#[cfg(feature = "cri")]
mod stream;
#[cfg(feature = "cri")]
mod suite;

/// The engines the suite runs on by default: every containerd `cargo xtask deps` provides (their
/// CRI plugins treat a task's IO at its exit differently: 1.6 closes it first, later ones wait).
const DEFAULT_ENGINES: &[&str] = &["1.6", "1.7", "2.1"];

#[derive(Debug)]
struct Args {
    engines: Vec<&'static str>,
    shims: Vec<&'static str>,
    /// Only the flood-then-exit runs (the pod walk, the broken config and the timings left out).
    only_floods: bool,
}

fn parse(args: &[String]) -> Result<Args, String> {
    let mut parsed = Args {
        engines: DEFAULT_ENGINES.to_vec(),
        shims: vec!["tether", "runc"],
        only_floods: false,
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--engine" => match args.next().map(String::as_str) {
                Some("all") => parsed.engines = crate::engines::CONTAINERD_ENGINES.to_vec(),
                Some(engine) => {
                    parsed.engines = vec![crate::engines::CONTAINERD_ENGINES
                        .iter()
                        .copied()
                        .find(|e| *e == engine)
                        .ok_or_else(|| {
                            format!(
                                "e2e cri: --engine {}|all, not {engine:?}",
                                crate::engines::CONTAINERD_ENGINES.join("|")
                            )
                        })?]
                }
                None => return Err("e2e cri: --engine needs a value".into()),
            },
            "--shim" => match args.next().map(String::as_str) {
                Some("tether") => parsed.shims = vec!["tether"],
                Some("runc") => parsed.shims = vec!["runc"],
                Some("both") => parsed.shims = vec!["tether", "runc"],
                other => return Err(format!("e2e cri: --shim tether|runc|both, not {other:?}")),
            },
            "--only-floods" => parsed.only_floods = true,
            other => return Err(format!("e2e cri: unknown argument {other:?}")),
        }
    }
    Ok(parsed)
}

/// Entry point: skips (or, with TETHER_E2E=require, fails) when this machine cannot run it.
pub fn run(args: &[String]) -> Result<(), String> {
    let parsed = parse(args)?;
    let binaries = [
        "containerd",
        "ctr",
        "containerd-shim-runc-v2",
        "runc",
        "protoc",
    ];
    if !super::can_run("cri", &binaries, || None)? {
        return Ok(());
    }
    run_with_client(&parsed, args)
}

#[cfg(not(feature = "cri"))]
fn run_with_client(_: &Args, args: &[String]) -> Result<(), String> {
    crate::util::run_status(
        crate::util::cargo()
            .args([
                "run",
                "--quiet",
                "--package",
                "xtask",
                "--features",
                "cri",
                "--",
            ])
            .args(["e2e", "cri"])
            .args(args),
    )
}

#[cfg(feature = "cri")]
fn run_with_client(parsed: &Args, _: &[String]) -> Result<(), String> {
    crate::bench::install_interrupt_handler();
    let tether = crate::util::build_tether(false)?;
    let shims: Vec<suite::Shim> = suite::SHIMS
        .iter()
        .copied()
        .filter(|s| parsed.shims.contains(&s.name))
        .collect();
    let system_path = std::env::var("PATH").unwrap_or_default();
    let mut failed = Vec::new();
    let mut summary = Vec::new();
    for engine in &parsed.engines {
        let path = match crate::engines::containerd_bin(engine)? {
            Some(bin) => format!("{}:{system_path}", bin.display()),
            None => system_path.clone(),
        };
        std::env::set_var("PATH", &path);
        let version = std::process::Command::new("containerd")
            .arg("--version")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default();
        println!("e2e cri {engine}: {version}");
        let result = suite::run(engine, &tether, &shims, parsed.only_floods);
        std::env::set_var("PATH", &system_path);
        match result {
            Ok(outcome) => {
                for (shim, start, exec) in &outcome.timings {
                    summary.push(format!(
                        "  containerd {engine:<4} {shim:<7} RunPodSandbox+Create+Start {:>7.1} ms   ExecSync {:>6.1} ms",
                        start.as_secs_f64() * 1e3,
                        exec.as_secs_f64() * 1e3
                    ));
                }
                if let [(_, tether_start, tether_exec), (_, runc_start, runc_exec)] =
                    outcome.timings[..]
                {
                    summary.push(format!(
                        "  containerd {engine:<4} tether/runc  start {:.2}×   ExecSync {:.2}×",
                        tether_start.as_secs_f64() / runc_start.as_secs_f64(),
                        tether_exec.as_secs_f64() / runc_exec.as_secs_f64()
                    ));
                }
                if outcome.failures.is_empty() {
                    println!("e2e cri {engine}: {} passed", outcome.passed);
                } else {
                    failed.push(format!(
                        "e2e cri {engine}: {} passed, {} failed:\n  {}",
                        outcome.passed,
                        outcome.failures.len(),
                        outcome.failures.join("\n  ")
                    ));
                }
            }
            Err(message) => failed.push(format!("e2e cri {engine}: {message}")),
        }
    }
    if !summary.is_empty() {
        println!("e2e cri: timings (medians; same run, pods of both shims in alternation)");
        for line in summary {
            println!("{line}");
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(failed.join("\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::parse;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn engines_and_shims_are_chosen_or_refused() {
        let parsed = parse(&args(&[])).unwrap();
        assert_eq!(parsed.engines, ["1.6", "1.7", "2.1"]);
        assert_eq!(parsed.shims, ["tether", "runc"]);
        assert!(!parsed.only_floods);
        assert!(parse(&args(&["--only-floods"])).unwrap().only_floods);
        let parsed = parse(&args(&["--engine", "1.7", "--shim", "tether"])).unwrap();
        assert_eq!(
            (parsed.engines, parsed.shims),
            (vec!["1.7"], vec!["tether"])
        );
        assert!(parse(&args(&["--engine", "3.0"]))
            .unwrap_err()
            .contains("3.0"));
        assert!(parse(&args(&["--shim", "crun"])).is_err());
        assert!(parse(&args(&["--fast"])).unwrap_err().contains("--fast"));
    }
}
