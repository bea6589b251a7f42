//! `cargo xtask <command>`: the project's own tasks. Run `cargo xtask help` for the list.

mod bench;
mod deps;
mod e2e;
mod engines;
mod fixture;
mod fuzz;
mod guest;
mod host;
mod install;
mod util;

use std::process::ExitCode;

const HELP: &str = "\
cargo xtask <command>

commands:
  deps [--no-engines]  install runc, crun, busybox-static, conmon, podman, containerd, tmux, zsh, logrotate, the CNI plugins,
                       iptables, qemu-system-x86 and xz-utils with apt-get,
                       give cgroup controllers left on a hybrid layout's v2 hierarchy a v1 mount
                       (crun refuses a hybrid layout otherwise), and unpack containerd 1.7 and 2.1
                       and docker 28 from Debian's newer suites into target/engines (not installed); as root
  fixture [--out DIR] [--bench]
                       make a busybox OCI bundle in DIR (default target/fixture/bundle);
                       --bench times the making of 50 bundles
  test [--under-load] [FILTER]
                       build, then run the unit and end-to-end tests (TETHER_E2E=require: no
                       skipping); --under-load keeps two CPU hogs busy the whole time
  fuzz [--seconds N] [--target NAME]
                       run each fuzz target of tests/fuzz for N seconds (default 60) with libFuzzer
  demo                 build tether, make the fixture, run a container that outlives its launcher
  bench [--quick] [--only startup|memory|exit|throughput|exec|rm|soak]
                       tether side by side with runc alone, conmon and containerd-shim-runc-v2;
                       writes bench/results.md, bench/results.json and bench/ratios.svg
  e2e containerd [--engine 1.6|1.7|2.1|all] [--shim tether|runc|both] [--only TEST]
                       (default: every engine present)
                       a private containerd runs containers through ctr with tether's shim
                       (io.containerd.tether.v2), then with containerd-shim-runc-v2; as root
  e2e docker [--engine 28] [--containerd 1.6|2.1|all] [--runtime tether|runc|both] [--only CASE]
                       dockerd 28 (private data root, exec root and socket) on a private
                       containerd runs containers with --runtime tether, then --runtime runc; as root
  e2e cri [--engine 1.6|1.7|2.1|all] [--shim tether|runc|both] [--only-floods]
                       (default: 1.6, 1.7 and 2.1) containerd with its CRI plugin, configured as
                       docs/kubernetes.md says, runs pods through a CRI client with tether's
                       handler and runc's, counts every line of containers that flood their log
                       and exit, and prints the timings of both; as root
  e2e cgroup2          boot Debian's kernel under qemu with cgroup v2 alone and check tether (runc,
                       crun) and containerd 1.6 and 2.1 (both shims) against the v2 files; as root
  e2e podman [--conmon tether|conmon|both] [--only CASE]
                       podman 4.3 on a private store runs containers with tether as its conmon
                       (no other conmon reachable), then with conmon; as root
  e2e guide            run docs/guide.md's commands in order and compare their output; as root
  install [--prefix DIR]
                       build (release) and install DIR/bin/tether, its containerd shim name
                       DIR/bin/containerd-shim-tether-v2 and podman's DIR/libexec/tether/conmon
                       (DIR defaults to /usr/local)
  help                 this text";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("deps") => deps::run(&args[1..]),
        Some("fixture") => fixture::run(&args[1..]),
        Some("test") => util::test(&args[1..]),
        Some("demo") => util::demo(),
        Some("bench") => bench::run(&args[1..]),
        Some("e2e") => e2e::run(&args[1..]),
        Some("fuzz") => fuzz::run(&args[1..]),
        Some("install") => install::run(&args[1..]),
        Some("help") | Some("--help") | Some("-h") | None => {
            println!("{HELP}");
            Ok(())
        }
        Some(other) => Err(format!("unknown command {other:?}; see `cargo xtask help`")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}
