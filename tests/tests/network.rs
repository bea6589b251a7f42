//! End-to-end tests of `run --network` and `-p`, with the CNI plugins Debian ships
//! (containernetworking-plugins) and real runc containers.
//!
//! Each test moves its own thread into a network namespace of its own first (a network namespace
//! is a thread's, and the processes it starts inherit it), so the bridge, the addresses and the
//! port rules it makes never touch the machine's own network and firewall, and go with the thread.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::path::Path;
use std::time::Duration;
use tether_tests::fixture::BundleSpec;
use tether_tests::harness::{root_or_skip, wait_until, Sandbox, REQUIRE_ENV};

const TIMEOUT: Duration = Duration::from_secs(30);
/// Where host-local keeps the addresses it gave out on tether's network.
const ADDRESSES: &str = "/var/lib/cni/networks/tether";

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Whether the plugins and iptables are here; without them the test skips, or fails under
/// `TETHER_E2E=require`.
fn plugins_or_skip(test: &str) -> bool {
    let here = ["bridge", "host-local", "loopback", "portmap"]
        .iter()
        .all(|p| Path::new("/usr/lib/cni").join(p).is_file())
        && tether_tests::harness::have_binary("iptables");
    if !here {
        assert_ne!(
            std::env::var(REQUIRE_ENV).as_deref(),
            Ok("require"),
            "{test}: the CNI plugins or iptables are missing (`cargo xtask deps` installs them)"
        );
        eprintln!("skipping {test}: no CNI plugins in /usr/lib/cni, or no iptables");
    }
    here
}

/// Moves this thread into a new network namespace with its loopback up.
fn private_network() {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare the network");
    let up = std::process::Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status()
        .expect("run ip");
    assert!(up.success());
}

/// `GET /` from `address`; the body, once a whole answer came.
fn http_get(address: SocketAddrV4) -> Option<String> {
    let mut stream = TcpStream::connect_timeout(&address.into(), Duration::from_secs(5)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream.write_all(b"GET / HTTP/1.0\r\n\r\n").ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    let (_, body) = answer.split_once("\r\n\r\n")?;
    Some(body.to_owned())
}

/// The address host-local gave the container, from the record in its state dir.
fn address_of(sandbox: &Sandbox, id: &str) -> String {
    let record = std::fs::read(sandbox.state_dir().join(id).join("network.json")).unwrap();
    let record: serde_json::Value = serde_json::from_slice(&record).unwrap();
    let address = record["result"]["ips"][0]["address"].as_str().unwrap();
    address.split('/').next().unwrap().to_owned()
}

fn nat_rules() -> String {
    let output = std::process::Command::new("iptables")
        .args(["-t", "nat", "-S"])
        .output()
        .unwrap();
    text(&output.stdout)
}

/// `-p HOST:CONTAINER` reaches a server in the container from the host, by the host's loopback
/// and by the bridge's address; the address and the port's rules are released when it exits, and
/// by `rm -f` when its daemon was killed. `--network host` shares the host's interfaces, the
/// default (none) has only loopback, and `-p` with either is refused.
#[test]
fn published_ports_reach_the_container_and_go_with_it() {
    if !root_or_skip("published_ports_reach_the_container_and_go_with_it")
        || !plugins_or_skip("published_ports_reach_the_container_and_go_with_it")
    {
        return;
    }
    private_network();
    let sandbox = Sandbox::new("publish");
    let id = sandbox.id();
    let rootfs = sandbox.bundle(&BundleSpec::new(["true"])).rootfs();
    let site = sandbox.path().join("site");
    std::fs::create_dir_all(&site).unwrap();
    std::fs::write(site.join("index.html"), "served from the container\n").unwrap();
    let volume = format!("{}:/www:ro", site.display());
    let run = |args: &[&str]| {
        let mut all = vec![
            "run".to_owned(),
            "--runtime".into(),
            sandbox.runtime().into(),
            "--runtime-root".into(),
            sandbox.runtime_root().to_string_lossy().into_owned(),
            "--rootfs".into(),
            rootfs.to_string_lossy().into_owned(),
        ];
        all.extend(args.iter().map(|a| a.to_string()));
        sandbox.tether_output(&all.iter().map(String::as_str).collect::<Vec<_>>())
    };

    let output = run(&[
        "-d", "-p", "8080:80", "-v", &volume, id, "--", "httpd", "-f", "-p", "80", "-h", "/www",
    ]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let local = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 8080);
    assert!(
        wait_until(TIMEOUT, || http_get(local).is_some()),
        "nothing answered on 127.0.0.1:8080"
    );
    assert_eq!(http_get(local).unwrap(), "served from the container\n");
    let gateway = SocketAddrV4::new(Ipv4Addr::new(10, 89, 0, 1), 8080);
    assert_eq!(http_get(gateway).unwrap(), "served from the container\n");
    let address = address_of(&sandbox, id);
    assert!(Path::new(ADDRESSES).join(&address).exists());
    let seen = sandbox.tether_output(&["exec", id, "--", "ip", "-4", "addr", "show", "eth0"]);
    assert!(
        text(&seen.stdout).contains(&address),
        "{}",
        text(&seen.stdout)
    );

    // A port published already, or held by a socket on the host, is refused before anything is
    // made.
    let twice = run(&["-d", "-p", "8080:80", "twice", "--", "true"]);
    assert_eq!(twice.status.code(), Some(125));
    assert!(
        text(&twice.stderr).contains(&format!("port 8080/tcp is published by container {id}")),
        "{}",
        text(&twice.stderr)
    );
    let _held = std::net::TcpListener::bind("0.0.0.0:8082").unwrap();
    let held = run(&["-d", "-p", "8082:80", "held", "--", "true"]);
    assert_eq!(held.status.code(), Some(125));
    assert!(
        text(&held.stderr).contains("port 8082/tcp is in use on the host"),
        "{}",
        text(&held.stderr)
    );
    assert!(!sandbox.state_dir().join("twice").exists());
    assert!(!sandbox.state_dir().join("held").exists());

    // Its exit releases the address and the port, for the next container to take.
    let stopped = sandbox.tether_output(&["stop", "-t", "1", id]);
    assert!(stopped.status.success(), "{}", text(&stopped.stderr));
    assert!(
        wait_until(TIMEOUT, || !Path::new(ADDRESSES).join(&address).exists()),
        "{address} still held after the exit"
    );
    assert!(!nat_rules().contains("dport 8080"), "{}", nat_rules());
    assert!(http_get(local).is_none());
    assert!(sandbox.tether_output(&["rm", id]).status.success());

    // Its daemon killed, `rm -f` releases them.
    let orphan = sandbox.another_id("orphan");
    let output = run(&["-d", "-p", "8081:80", &orphan, "--", "sleep", "1000"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let address = address_of(&sandbox, &orphan);
    assert!(nat_rules().contains("dport 8081"));
    sandbox.kill_daemon(&orphan);
    let removed = sandbox.tether_output(&["rm", "-f", &orphan]);
    assert!(removed.status.success(), "{}", text(&removed.stderr));
    assert!(!Path::new(ADDRESSES).join(&address).exists());
    assert!(!nat_rules().contains("dport 8081"), "{}", nat_rules());

    // host: the host's interfaces (tether0 is one now); none, the default: loopback alone.
    let host = run(&[
        "--rm",
        "--network",
        "host",
        "h",
        "--",
        "cat",
        "/proc/net/dev",
    ]);
    assert!(
        text(&host.stdout).contains("tether0"),
        "{}",
        text(&host.stdout)
    );
    let none = run(&["--rm", "n", "--", "cat", "/proc/net/dev"]);
    let interfaces: Vec<String> = text(&none.stdout)
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next().map(|name| name.trim().to_owned()))
        .collect();
    assert_eq!(interfaces, ["lo"]);
    for mode in ["host", "none"] {
        let refused = run(&["--rm", "--network", mode, "-p", "1:2", "p", "--", "true"]);
        assert_eq!(refused.status.code(), Some(125));
        assert!(
            text(&refused.stderr).contains("-p publishes a port of the bridge network"),
            "{}",
            text(&refused.stderr)
        );
    }
    let left: Vec<_> = std::fs::read_dir(sandbox.state_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
