//! Puts the git commit the binary is built from into `tether --version` (TETHER_COMMIT).

use std::path::Path;
use std::process::Command;

fn main() {
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
