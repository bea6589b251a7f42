//! `cargo xtask deps`: install what running, testing and benchmarking need, through apt-get.

use crate::util::run_status;
use std::path::Path;
use std::process::Command;

/// (package, a file it installs that tells us it is there)
const PACKAGES: &[(&str, &str)] = &[
    ("runc", "/usr/sbin/runc"),
    ("busybox-static", "/bin/busybox"),
    ("crun", "/usr/bin/crun"),
    ("conmon", "/usr/bin/conmon"),
    // The podman suite: podman 4.3 with tether as its conmon, and with conmon.
    ("podman", "/usr/bin/podman"),
    ("containerd", "/usr/bin/containerd"),
    ("tmux", "/usr/bin/tmux"),
    // The completion test sources the zsh script.
    ("zsh", "/usr/bin/zsh"),
    ("logrotate", "/usr/sbin/logrotate"),
    // `run --network bridge` and `-p`: the CNI plugins, and the iptables portmap drives.
    ("containernetworking-plugins", "/usr/lib/cni/bridge"),
    ("iptables", "/usr/sbin/iptables"),
    // The cgroup v2 suite boots Debian's kernel in a guest under qemu (TCG), from its xz'd package.
    ("qemu-system-x86", "/usr/bin/qemu-system-x86_64"),
    ("xz-utils", "/usr/bin/xz"),
    // The CRI suite's client is generated from the CRI protos at build time.
    ("protobuf-compiler", "/usr/bin/protoc"),
];

pub fn run(args: &[String]) -> Result<(), String> {
    let engines = match args {
        [] => true,
        [flag] if flag == "--no-engines" => false,
        other => return Err(format!("deps: unknown arguments {other:?} (--no-engines)")),
    };
    install_packages()?;
    if engines {
        crate::engines::fetch()?;
    }
    // Not fatal: only crun needs it, and crun's own test says so clearly if it is still refused.
    if let Err(message) = crate::host::prepare_cgroups() {
        eprintln!("warning: {message}");
    }
    Ok(())
}

fn install_packages() -> Result<(), String> {
    let missing: Vec<&str> = PACKAGES
        .iter()
        .filter(|(package, marker)| !Path::new(marker).exists() && !dpkg_has(package))
        .map(|(package, _)| *package)
        .collect();
    if missing.is_empty() {
        let names: Vec<&str> = PACKAGES.iter().map(|(p, _)| *p).collect();
        println!("deps: all present ({})", names.join(", "));
        return Ok(());
    }
    if !nix::unistd::geteuid().is_root() {
        return Err(format!(
            "deps: {} missing, and installing needs root: run `sudo cargo xtask deps`",
            missing.join(", ")
        ));
    }
    if !Path::new("/usr/bin/apt-get").exists() {
        return Err(format!(
            "deps: {} missing and apt-get is not available here: install them with the system's package manager",
            missing.join(", ")
        ));
    }
    println!("deps: installing {}", missing.join(", "));
    run_status(Command::new("apt-get").args(["update", "-qq"]))?;
    run_status(
        Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    println!("deps: installed {}", missing.join(", "));
    Ok(())
}

fn dpkg_has(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
}
