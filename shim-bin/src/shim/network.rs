//! `run --network bridge` and `-p`: the container's network, made by the CNI plugins that
//! containerd's CRI plugin uses too (Debian's `containernetworking-plugins`: loopback, bridge with
//! host-local addresses, portmap). tether writes no firewall rules of its own.
//!
//! The daemon attaches the network between `runc create` and `runc start`, in the container's own
//! network namespace, and detaches it when the container exits or is removed. What was attached
//! is recorded in the container's state dir first, so whoever removes the container (its daemon,
//! or `tether rm` when the daemon is gone) can detach it; a plugin's DEL of what is gone already
//! succeeds, as CNI requires.
//!
//! ```text
//! tether run -d -p 8080:80 --rootfs ./rootfs web -- httpd -f -p 80
//! # tether0 (10.89.0.1/16) on the host, eth0 (10.89.0.N) in the container, host port 8080 → 80
//! ```

use serde::{Deserialize, Serialize};
use shim_runc::ExitWaiter;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Where the plugins are looked for: Debian's package, then the place upstream installs them.
const PLUGIN_DIRS: [&str; 2] = ["/usr/lib/cni", "/opt/cni/bin"];
/// tether's network: its name (host-local keeps its addresses under it), bridge and subnet.
const NETWORK: &str = "tether";
const BRIDGE: &str = "tether0";
const SUBNET: &str = "10.89.0.0/16";
const CNI_VERSION: &str = "1.0.0";
/// The file in a container's state dir that records its network.
pub const RECORD: &str = "network.json";
/// The longest one plugin may take (portmap waits for the iptables lock).
const PLUGIN_TIMEOUT: Duration = Duration::from_secs(30);

/// One `-p [IP:]HOST:CONTAINER[/tcp|udp]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Publish {
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: String,
}

impl std::str::FromStr for Publish {
    type Err = String;

    fn from_str(text: &str) -> Result<Publish, String> {
        let bad = || format!("-p {text:?}: not [IP:]HOST:CONTAINER[/tcp|udp]");
        let (ports, protocol) = match text.rsplit_once('/') {
            Some((ports, protocol @ ("tcp" | "udp"))) => (ports, protocol),
            Some(_) => return Err(bad()),
            None => (text, "tcp"),
        };
        let parts: Vec<&str> = ports.split(':').collect();
        let (host_ip, host, container) = match parts[..] {
            [host, container] => (None, host, container),
            [ip, host, container] => (Some(ip.parse().map_err(|_| bad())?), host, container),
            _ => return Err(bad()),
        };
        let port = |text: &str| match text.parse::<u16>() {
            Ok(port) if port > 0 => Ok(port),
            _ => Err(format!("-p {text:?}: a port is 1 to 65535")),
        };
        Ok(Publish {
            host_ip,
            host_port: port(host)?,
            container_port: port(container)?,
            protocol: protocol.to_owned(),
        })
    }
}

/// tether's bridge network for a container, as `tether run` asks its daemon for it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Request {
    /// The container as the plugins know it: unique to its state dir and id.
    pub cni_id: String,
    pub publish: Vec<Publish>,
    /// Where what was attached is recorded (in the container's state dir).
    pub record: PathBuf,
}

/// What was attached to a container, as recorded in its state dir.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Attachment {
    /// The container as the plugins know it: unique to its state dir and id.
    pub cni_id: String,
    pub publish: Vec<Publish>,
    /// The bridge plugin's result (the container's address), once it answered.
    #[serde(default)]
    pub result: Option<serde_json::Value>,
}

/// The directory holding the plugins `publish` needs; the error says what to install.
pub fn plugin_dir(publish: &[Publish]) -> Result<PathBuf, String> {
    let needed: &[&str] = if publish.is_empty() {
        &["loopback", "bridge", "host-local"]
    } else {
        &["loopback", "bridge", "host-local", "portmap"]
    };
    PLUGIN_DIRS
        .iter()
        .map(PathBuf::from)
        .find(|dir| needed.iter().all(|plugin| dir.join(plugin).is_file()))
        .ok_or_else(|| {
            format!(
                "--network bridge needs the CNI plugins {} in {}: on Debian, apt-get install containernetworking-plugins iptables",
                needed.join(", "),
                PLUGIN_DIRS.join(" or ")
            )
        })
}

/// Refuses a port another container of `others` (records of attached networks) publishes
/// already, or that a socket on the host holds: the rules would send it to one of the two.
pub fn check_ports_free(publish: &[Publish], others: &[(String, PathBuf)]) -> Result<(), String> {
    let overlaps = |a: &Publish, b: &Publish| {
        a.host_port == b.host_port
            && a.protocol == b.protocol
            && (a.host_ip.is_none() || b.host_ip.is_none() || a.host_ip == b.host_ip)
    };
    for (other, record) in others {
        let Ok(text) = std::fs::read(record) else {
            continue;
        };
        let Ok(attachment) = serde_json::from_slice::<Attachment>(&text) else {
            continue;
        };
        if let Some(taken) = publish
            .iter()
            .find(|p| attachment.publish.iter().any(|q| overlaps(p, q)))
        {
            return Err(format!(
                "-p: port {}/{} is published by container {other} already",
                taken.host_port, taken.protocol
            ));
        }
    }
    for p in publish {
        let address = (p.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED), p.host_port);
        let bound = if p.protocol == "udp" {
            std::net::UdpSocket::bind(address).map(drop)
        } else {
            std::net::TcpListener::bind(address).map(drop)
        };
        if let Err(e) = bound {
            if e.kind() == std::io::ErrorKind::AddrInUse {
                return Err(format!(
                    "-p: port {}/{} is in use on the host",
                    p.host_port, p.protocol
                ));
            }
        }
    }
    Ok(())
}

/// Attaches tether's network to the namespace `netns` (the created container's): loopback up,
/// an address on the bridge, the ports published. The record is written before the first plugin
/// runs; on failure what was attached is detached again and the error is one line.
pub fn attach(
    request: &Request,
    netns: &Path,
    waiter: &mut dyn ExitWaiter,
) -> Result<Attachment, String> {
    let (cni_id, publish, record) = (&request.cni_id, &request.publish, &request.record);
    let plugins = plugin_dir(publish)?;
    let mut attachment = Attachment {
        cni_id: cni_id.to_owned(),
        publish: publish.to_vec(),
        result: None,
    };
    save(&attachment, record)?;
    let attached = (|| {
        call(
            &plugins,
            "ADD",
            "lo",
            &loopback(),
            cni_id,
            Some(netns),
            waiter,
        )?;
        let result = call(
            &plugins,
            "ADD",
            "eth0",
            &bridge(),
            cni_id,
            Some(netns),
            waiter,
        )?;
        attachment.result = Some(result.clone());
        save(&attachment, record)?;
        if !publish.is_empty() {
            let config = portmap(publish, Some(&result));
            call(
                &plugins,
                "ADD",
                "eth0",
                &config,
                cni_id,
                Some(netns),
                waiter,
            )?;
        }
        Ok(())
    })();
    match attached {
        Ok(()) => Ok(attachment),
        Err(message) => {
            let _ = detach(record, waiter);
            Err(message)
        }
    }
}

/// Detaches what `record` says was attached (its namespace may be gone: the plugins release the
/// address and the port rules all the same), then removes the record. Nothing recorded: nothing
/// to do.
pub fn detach(record: &Path, waiter: &mut dyn ExitWaiter) -> Result<(), String> {
    let text = match std::fs::read(record) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("network record {}: {e}", record.display())),
    };
    let attachment: Attachment = serde_json::from_slice(&text)
        .map_err(|e| format!("network record {}: {e}", record.display()))?;
    let plugins = plugin_dir(&attachment.publish)?;
    let id = attachment.cni_id.as_str();
    let mut failed = None;
    if !attachment.publish.is_empty() {
        let config = portmap(&attachment.publish, attachment.result.as_ref());
        failed = call(&plugins, "DEL", "eth0", &config, id, None, waiter).err();
    }
    if let Err(e) = call(&plugins, "DEL", "eth0", &bridge(), id, None, waiter) {
        failed.get_or_insert(e);
    }
    match failed {
        Some(message) => Err(message),
        None => {
            let _ = std::fs::remove_file(record);
            Ok(())
        }
    }
}

fn save(attachment: &Attachment, record: &Path) -> Result<(), String> {
    let text = serde_json::to_vec(attachment).expect("an attachment serializes");
    std::fs::write(record, text).map_err(|e| format!("network record {}: {e}", record.display()))
}

fn loopback() -> serde_json::Value {
    serde_json::json!({"cniVersion": CNI_VERSION, "name": NETWORK, "type": "loopback"})
}

fn bridge() -> serde_json::Value {
    serde_json::json!({
        "cniVersion": CNI_VERSION,
        "name": NETWORK,
        "type": "bridge",
        "bridge": BRIDGE,
        "isGateway": true,
        "ipMasq": true,
        "hairpinMode": true,
        "ipam": {
            "type": "host-local",
            "ranges": [[{"subnet": SUBNET}]],
            "routes": [{"dst": "0.0.0.0/0"}],
        },
    })
}

fn portmap(publish: &[Publish], previous: Option<&serde_json::Value>) -> serde_json::Value {
    let mappings: Vec<serde_json::Value> = publish
        .iter()
        .map(|p| {
            let mut mapping = serde_json::json!({
                "hostPort": p.host_port,
                "containerPort": p.container_port,
                "protocol": p.protocol,
            });
            if let Some(ip) = p.host_ip {
                mapping["hostIP"] = ip.to_string().into();
            }
            mapping
        })
        .collect();
    let mut config = serde_json::json!({
        "cniVersion": CNI_VERSION,
        "name": NETWORK,
        "type": "portmap",
        "capabilities": {"portMappings": true},
        "runtimeConfig": {"portMappings": mappings},
    });
    if let Some(previous) = previous {
        config["prevResult"] = previous.clone();
    }
    config
}

/// Runs one plugin (its `type`) with `command`; returns its result (`{}` when it printed none).
fn call(
    plugins: &Path,
    command: &str,
    interface: &str,
    config: &serde_json::Value,
    cni_id: &str,
    netns: Option<&Path>,
    waiter: &mut dyn ExitWaiter,
) -> Result<serde_json::Value, String> {
    let plugin = config["type"].as_str().unwrap_or_default();
    let mut cmd = Command::new(plugins.join(plugin));
    cmd.env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", cni_id)
        .env("CNI_NETNS", netns.map(Path::as_os_str).unwrap_or_default())
        .env("CNI_IFNAME", interface)
        .env("CNI_PATH", plugins);
    let input = serde_json::to_vec(config).expect("a config serializes");
    let said = |what: &str| format!("network: {plugin} {command}: {what}");
    let output = shim_runc::run_helper(&mut cmd, &input, waiter, PLUGIN_TIMEOUT)
        .map_err(|e| said(&e.to_string()))?;
    if !output.status.success() {
        // A plugin's error is a JSON object with `msg` (and `details`) on its stdout.
        let error: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap_or_default();
        let message = match (error["msg"].as_str(), error["details"].as_str()) {
            (Some(msg), Some(details)) if !details.is_empty() => format!("{msg}: {details}"),
            (Some(msg), _) => msg.to_owned(),
            _ => String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        };
        let message: String = message.lines().collect::<Vec<_>>().join(" ");
        return Err(said(&format!("{message} ({})", output.status)));
    }
    if output.stdout.iter().all(u8::is_ascii_whitespace) {
        return Ok(serde_json::json!({}));
    }
    serde_json::from_slice(&output.stdout).map_err(|e| said(&format!("its result: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_takes_dockers_forms() {
        let p: Publish = "8080:80".parse().unwrap();
        assert_eq!(
            p,
            Publish {
                host_ip: None,
                host_port: 8080,
                container_port: 80,
                protocol: "tcp".into()
            }
        );
        let p: Publish = "127.0.0.1:5353:53/udp".parse().unwrap();
        assert_eq!(p.host_ip, Some(Ipv4Addr::LOCALHOST));
        assert_eq!(p.protocol, "udp");
        for bad in [
            "80",
            "0:80",
            "8080:70000",
            "a:80",
            "1.2.3:80:80",
            "80:80/sctp",
            "1:2:3:4",
        ] {
            assert!(bad.parse::<Publish>().is_err(), "{bad}");
        }
    }

    #[test]
    fn portmap_carries_the_mappings_and_the_bridges_result() {
        let publish = ["127.0.0.1:8080:80".parse().unwrap()];
        let previous = serde_json::json!({"ips": [{"address": "10.89.0.2/16"}]});
        let config = portmap(&publish, Some(&previous));
        assert_eq!(
            config["runtimeConfig"]["portMappings"],
            serde_json::json!([{"hostPort": 8080, "containerPort": 80, "protocol": "tcp", "hostIP": "127.0.0.1"}])
        );
        assert_eq!(config["prevResult"], previous);
        assert_eq!(config["name"], bridge()["name"]);
    }
}
