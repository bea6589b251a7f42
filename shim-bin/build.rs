//! Links `tether` as a position-dependent executable, and puts the git commit it is built from
//! into `tether --version` (TETHER_COMMIT).
//!
//! Position-dependent: a PIE binary is relocated at load time: every page of `.data.rel.ro` and the
//! GOT that holds an absolute address is written by the loader and becomes private to the process
//! (about 170 KiB for tether). The daemon runs once per container, so those pages are paid once
//! per container. With `-no-pie` the linker resolves them at link time and they stay clean and
//! shared between daemons.

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rustc-link-arg-bin=tether=-no-pie");
    let commit = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .map(|text| text.trim().to_owned())
        .filter(|text| !text.is_empty())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=TETHER_COMMIT={commit}");
    // Built again when HEAD moves: the ref HEAD names, or HEAD itself when detached. (Only paths
    // that exist: cargo would run this again at every build for one that does not.)
    let git = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.git");
    let mut watched = vec![git.join("HEAD"), git.join("packed-refs")];
    if let Ok(head) = std::fs::read_to_string(git.join("HEAD")) {
        if let Some(reference) = head.trim().strip_prefix("ref: ") {
            watched.push(git.join(reference));
        }
    }
    for path in watched.iter().filter(|path| path.exists()) {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    if !watched.iter().any(|path| path.exists()) {
        println!("cargo:rerun-if-changed=build.rs");
    }
}
