//! `cargo xtask fixture`: a busybox bundle on disk, and how long one takes to make.

use std::path::PathBuf;
use std::time::Instant;
use tether_tests::fixture::BundleSpec;

pub fn run(args: &[String]) -> Result<(), String> {
    let mut out = crate::util::workspace_root().join("target/fixture/bundle");
    let mut bench = false;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--out" => {
                out = PathBuf::from(args.next().ok_or("fixture: --out needs a directory")?);
            }
            "--bench" => bench = true,
            other => return Err(format!("fixture: unknown option {other:?}")),
        }
    }
    if bench {
        return bench_bundles();
    }
    if out.exists() {
        std::fs::remove_dir_all(&out)
            .map_err(|e| format!("fixture: remove {}: {e}", out.display()))?;
    }
    let bundle = BundleSpec::shell("echo hello from busybox; date")
        .create_standalone(&out)
        .map_err(|e| format!("fixture: {e}"))?;
    println!("{}", bundle.path().display());
    Ok(())
}

fn bench_bundles() -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| format!("fixture: temp dir: {e}"))?;
    let first = Instant::now();
    BundleSpec::shell("true")
        .create(dir.path().join("first"))
        .map_err(|e| format!("fixture: {e}"))?;
    let first = first.elapsed();
    const N: usize = 50;
    let mut samples = Vec::with_capacity(N);
    for i in 0..N {
        let start = Instant::now();
        BundleSpec::shell("true")
            .create(dir.path().join(format!("b{i}")))
            .map_err(|e| format!("fixture: {e}"))?;
        samples.push(start.elapsed().as_secs_f64() * 1e3);
    }
    samples.sort_by(f64::total_cmp);
    println!(
        "fixture: first bundle {:.2} ms; next {N}: median {:.2} ms, p90 {:.2} ms, max {:.2} ms",
        first.as_secs_f64() * 1e3,
        samples[N / 2],
        samples[N * 9 / 10],
        samples[N - 1]
    );
    Ok(())
}
