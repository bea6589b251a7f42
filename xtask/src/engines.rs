//! Newer container engines from Debian's own archive, unpacked into a private prefix: containerd
//! 1.7 (trixie) and 2.1 (sid), and Docker 28 (sid's docker.io and docker-cli), without touching the
//! system's packages.
//!
//! apt gets a private sources list naming the same archive URI as the machine's own apt sources
//! (read from the system's configuration, so no host name is written here), private lists and
//! cache, and `apt-get download`s the packages; `dpkg-deb -x` unpacks each into
//! `target/engines/<engine>`. Their binaries need only glibc 2.34 and run on Debian 12 unchanged.

use crate::util::{run_status, workspace_root};
use std::path::{Path, PathBuf};
use std::process::Command;

/// An engine: its name on the command line, the package, the suite it comes from, the version
/// prefix it is expected to have, its binary (under the prefix) that says it is unpacked, and any
/// further packages unpacked beside it.
struct Engine {
    name: &'static str,
    package: &'static str,
    suite: &'static str,
    version: &'static str,
    binary: &'static str,
    also: &'static [&'static str],
}

const ENGINES: &[Engine] = &[
    Engine {
        name: "containerd-1.7",
        package: "containerd",
        suite: "trixie",
        version: "1.7.",
        binary: "usr/bin/containerd",
        also: &[],
    },
    Engine {
        name: "containerd-2.1",
        package: "containerd",
        suite: "sid",
        version: "2.1.",
        binary: "usr/bin/containerd",
        also: &[],
    },
    Engine {
        name: "docker-28",
        package: "docker.io",
        suite: "sid",
        version: "28.",
        // The CLI comes last: its binary there means both packages are.
        binary: "usr/bin/docker",
        also: &["docker-cli"],
    },
];

/// The directory holding Docker 28's dockerd and docker (`usr/sbin`, `usr/bin`), once unpacked.
pub fn docker_prefix() -> Result<PathBuf, String> {
    let dir = prefix("docker-28");
    if !dir.join("usr/sbin/dockerd").is_file() || !dir.join("usr/bin/docker").is_file() {
        return Err("docker 28 is not unpacked: run `cargo xtask deps`".into());
    }
    Ok(dir)
}

/// The containerd engines `e2e containerd --engine` takes; 1.6 is the system's own.
pub const CONTAINERD_ENGINES: &[&str] = &["1.6", "1.7", "2.1"];

/// The containerd engines present: the system's 1.6, and those `deps` unpacked.
pub fn available() -> Vec<&'static str> {
    CONTAINERD_ENGINES
        .iter()
        .copied()
        .filter(|e| *e == "1.6" || containerd_bin(e).is_ok())
        .collect()
}

/// Where an engine's files are unpacked.
fn prefix(name: &str) -> PathBuf {
    workspace_root().join("target/engines").join(name)
}

/// The directory whose binaries come first on PATH for containerd `version` ("1.6": the system's).
pub fn containerd_bin(version: &str) -> Result<Option<PathBuf>, String> {
    if version == "1.6" {
        return Ok(None);
    }
    let name = format!("containerd-{version}");
    if !ENGINES.iter().any(|e| e.name == name) {
        return Err(format!(
            "no containerd engine {version:?} (engines: {})",
            CONTAINERD_ENGINES.join(", ")
        ));
    }
    let bin = prefix(&name).join("usr/bin");
    if !bin.join("containerd").is_file() {
        return Err(format!(
            "containerd {version} is not unpacked: run `cargo xtask deps --engines`"
        ));
    }
    Ok(Some(bin))
}

/// `cargo xtask deps --engines`: download and unpack what is missing.
pub fn fetch() -> Result<(), String> {
    let missing: Vec<&Engine> = ENGINES
        .iter()
        .filter(|e| !prefix(e.name).join(e.binary).is_file())
        .collect();
    if missing.is_empty() {
        println!("deps: engines present ({})", names());
        return Ok(());
    }
    let mut suites: Vec<&str> = missing.iter().map(|e| e.suite).collect();
    suites.dedup();
    let apt = PrivateApt::new(&suites)?;
    for engine in missing {
        let target = prefix(engine.name);
        let _ = std::fs::remove_dir_all(&target);
        for package in std::iter::once(&engine.package).chain(engine.also) {
            let deb = apt.download(&format!("{package}/{}", engine.suite), package)?;
            run_status(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&target))?;
            let _ = std::fs::remove_file(&deb);
        }
        let version = Command::new(target.join(engine.binary))
            .arg("--version")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        if !version.contains(&format!(" {}", engine.version)) {
            eprintln!(
                "deps: warning: {} from {} is {:?}, not {}x",
                engine.package,
                engine.suite,
                version.trim(),
                engine.version
            );
        }
        println!("deps: {} unpacked in {}", engine.name, target.display());
    }
    Ok(())
}

/// apt with a private sources list naming suites of the machine's own Debian archive, its lists
/// and cache under target/engines/apt: it downloads packages and installs nothing.
pub struct PrivateApt {
    dir: PathBuf,
    sources: PathBuf,
}

impl PrivateApt {
    /// Writes the sources list for `suites` and updates its package lists.
    pub fn new(suites: &[&str]) -> Result<PrivateApt, String> {
        let uri = archive_uri()?;
        let dir = workspace_root().join("target/engines/apt");
        for sub in ["lists/partial", "cache/archives/partial", "download"] {
            std::fs::create_dir_all(dir.join(sub))
                .map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        let sources = dir.join("sources.list");
        let list: String = suites
            .iter()
            .map(|suite| {
                format!("deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] {uri} {suite} main\n")
            })
            .collect();
        std::fs::write(&sources, list).map_err(|e| format!("{}: {e}", sources.display()))?;
        let apt = PrivateApt { dir, sources };
        run_status(apt.command("apt-get").arg("update"))?;
        Ok(apt)
    }

    /// `program` (apt-get, apt-cache) with the private configuration.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.arg("-o")
            .arg(format!("Dir::Etc::SourceList={}", self.sources.display()))
            .args(["-o", "Dir::Etc::SourceParts=/nonexistent"])
            .arg("-o")
            .arg(format!(
                "Dir::State::Lists={}",
                self.dir.join("lists").display()
            ))
            .arg("-o")
            .arg(format!("Dir::Cache={}", self.dir.join("cache").display()))
            .args(["-o", "APT::Sandbox::User=root", "-qq"]);
        cmd
    }

    /// Downloads `spec` (`package` or `package/suite`); returns the .deb of `package`.
    pub fn download(&self, spec: &str, package: &str) -> Result<PathBuf, String> {
        let download = self.dir.join("download");
        run_status(
            self.command("apt-get")
                .current_dir(&download)
                .arg("download")
                .arg(spec),
        )?;
        newest_deb(&download, package)
    }
}

fn names() -> String {
    ENGINES
        .iter()
        .map(|e| e.name)
        .collect::<Vec<_>>()
        .join(", ")
}

fn newest_deb(dir: &Path, package: &str) -> Result<PathBuf, String> {
    std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| {
            path.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("{package}_")) && n.ends_with(".deb"))
        })
        .max_by_key(|path| std::fs::metadata(path).and_then(|m| m.modified()).ok())
        .ok_or_else(|| format!("apt-get download left no {package} package"))
}

/// The Debian archive URI the machine's own apt sources name (deb822 `.sources` files first, then
/// one-line `sources.list` entries), skipping the security archive.
fn archive_uri() -> Result<String, String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir("/etc/apt/sources.list.d")
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "sources"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        if let Some(uri) = uri_in_deb822(&text) {
            return Ok(uri);
        }
    }
    let text = std::fs::read_to_string("/etc/apt/sources.list").unwrap_or_default();
    uri_in_one_line(&text).ok_or_else(|| {
        "no Debian archive in the apt sources (/etc/apt/sources.list.d/*.sources, /etc/apt/sources.list)"
            .to_owned()
    })
}

fn usable(uri: &str, suites: &str) -> bool {
    !uri.contains("security") && !suites.contains("-security") && uri.contains("/debian")
}

fn uri_in_deb822(text: &str) -> Option<String> {
    for stanza in text.split("\n\n") {
        let field = |name: &str| {
            stanza.lines().find_map(|line| {
                line.strip_prefix(name)
                    .and_then(|rest| rest.strip_prefix(':'))
                    .map(str::trim)
            })
        };
        if let (Some(uris), Some(suites)) = (field("URIs"), field("Suites")) {
            if let Some(uri) = uris.split_whitespace().next() {
                if usable(uri, suites) && field("Enabled") != Some("no") {
                    return Some(uri.trim_end_matches('/').to_owned());
                }
            }
        }
    }
    None
}

fn uri_in_one_line(text: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let mut words = line
            .split_whitespace()
            .filter(|w| !w.starts_with('['))
            .skip_while(|w| w.contains('=') || w.ends_with(']'));
        if words.next()? != "deb" {
            return None;
        }
        let uri = words.find(|w| w.contains("://"))?;
        let suite = words.next()?;
        usable(uri, suite).then(|| uri.trim_end_matches('/').to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_archive_is_read_from_either_format() {
        let deb822 =
            "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\n\
                      Components: main\n\nTypes: deb\nURIs: http://mirror.example/debian-security\n\
                      Suites: bookworm-security\n";
        assert_eq!(
            uri_in_deb822(deb822).as_deref(),
            Some("http://mirror.example/debian")
        );
        let security_first =
            "Types: deb\nURIs: http://m/debian-security\nSuites: bookworm-security\n\n\
                              Types: deb\nURIs: http://m/debian/\nSuites: bookworm\n";
        assert_eq!(
            uri_in_deb822(security_first).as_deref(),
            Some("http://m/debian")
        );
        let one_line = "# comment\ndeb http://m/debian-security bookworm-security main\n\
                        deb [arch=amd64] http://m/debian bookworm main\n";
        assert_eq!(
            uri_in_one_line(one_line).as_deref(),
            Some("http://m/debian")
        );
        assert_eq!(
            uri_in_one_line("deb-src http://m/debian bookworm main"),
            None
        );
    }
}
