//! `cargo xtask install [--prefix DIR]`: the release binary as DIR/bin/tether, and the name
//! containerd looks for the `io.containerd.tether.v2` runtime under, DIR/bin/containerd-shim-tether-v2
//! (a link to it).

use std::path::PathBuf;

pub fn run(args: &[String]) -> Result<(), String> {
    let mut prefix = PathBuf::from("/usr/local");
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--prefix" => {
                prefix = PathBuf::from(args.next().ok_or("install: --prefix needs a directory")?)
            }
            other => return Err(format!("install: unknown argument {other:?}")),
        }
    }
    let built = crate::util::build_tether(true)?;
    let bin = prefix.join("bin");
    std::fs::create_dir_all(&bin).map_err(|e| format!("install: {}: {e}", bin.display()))?;
    let target = bin.join("tether");
    // Copy to a temporary name and rename: a running daemon keeps its (old) binary.
    let staging = bin.join(".tether.new");
    std::fs::copy(&built, &staging)
        .map_err(|e| format!("install: copy to {}: {e}", staging.display()))?;
    std::fs::rename(&staging, &target)
        .map_err(|e| format!("install: {}: {e}", target.display()))?;
    let shim = bin.join("containerd-shim-tether-v2");
    let _ = std::fs::remove_file(&shim);
    std::os::unix::fs::symlink("tether", &shim)
        .map_err(|e| format!("install: {}: {e}", shim.display()))?;
    println!(
        "installed {} and {} -> tether",
        target.display(),
        shim.display()
    );
    Ok(())
}
