//! The busybox bundle: a rootfs from the host's static busybox (Debian's `busybox-static`) and a
//! `config.json` made with `oci-spec`.
//!
//! The rootfs is built once per machine in the temp dir (busybox, one symlink per applet, /etc files,
//! mount points) and shared read-only: a bundle made by [`BundleSpec::create`] is a `config.json` whose
//! `root.path` points at it, with a private tmpfs on `/tmp`, so a bundle costs about a millisecond.
//! (Symlink creation alone costs ~0.7 ms each on this machine's disk, 190 ms for the applets.)
//! [`BundleSpec::create_standalone`] copies a rootfs into the bundle for a self-contained directory.

use oci_spec::runtime::{
    LinuxBuilder, LinuxNamespace, LinuxNamespaceType, Mount, ProcessBuilder, RootBuilder, Spec,
};
use std::fs;
use std::io;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Where Debian's `busybox-static` installs the static binary.
pub const HOST_BUSYBOX: &str = "/bin/busybox";

/// A fixture error with the step that failed.
#[derive(Debug)]
pub struct FixtureError(pub String);

impl std::fmt::Display for FixtureError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FixtureError {}

fn step<T>(what: impl FnOnce() -> String, result: io::Result<T>) -> Result<T, FixtureError> {
    result.map_err(|e| FixtureError(format!("{}: {e}", what())))
}

/// What the container runs and how it is isolated.
#[derive(Debug, Clone)]
pub struct BundleSpec {
    args: Vec<String>,
    env: Vec<String>,
    pid_namespace: bool,
    terminal: bool,
    readonly_rootfs: bool,
    memory_limit: Option<i64>,
    extra_mounts: Vec<Mount>,
}

impl BundleSpec {
    /// A container running `args` with busybox's PATH, default namespaces, no terminal.
    pub fn new<I, S>(args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        BundleSpec {
            args: args.into_iter().map(Into::into).collect(),
            env: vec![
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
                "HOME=/root".into(),
            ],
            pid_namespace: true,
            terminal: false,
            readonly_rootfs: false,
            memory_limit: None,
            extra_mounts: Vec::new(),
        }
    }

    /// `sh -c SCRIPT`.
    pub fn shell(script: &str) -> Self {
        Self::new(["sh", "-c", script])
    }

    /// Adds `KEY=VALUE` to the environment.
    pub fn env(mut self, entry: impl Into<String>) -> Self {
        self.env.push(entry.into());
        self
    }

    /// Without a PID namespace the container's processes are plain host processes: signals reach its
    /// first process like any other, and orphans of it land on the shim.
    pub fn pid_namespace(mut self, on: bool) -> Self {
        self.pid_namespace = on;
        self
    }

    /// `process.terminal`.
    pub fn terminal(mut self, on: bool) -> Self {
        self.terminal = on;
        self
    }

    /// `root.readonly`.
    pub fn readonly_rootfs(mut self, on: bool) -> Self {
        self.readonly_rootfs = on;
        self
    }

    /// A memory limit (bytes) for the container's cgroup.
    pub fn memory_limit(mut self, bytes: i64) -> Self {
        self.memory_limit = Some(bytes);
        self
    }

    /// Bind-mounts `host` at `container` (read-write).
    pub fn bind(mut self, host: &Path, container: &str) -> Self {
        let mut mount = Mount::default();
        mount
            .set_destination(PathBuf::from(container))
            .set_source(Some(host.to_owned()))
            .set_typ(Some("bind".into()))
            .set_options(Some(vec!["rbind".into(), "rw".into()]));
        self.extra_mounts.push(mount);
        self
    }

    /// The OCI runtime spec of this bundle.
    pub fn to_spec(&self) -> Result<Spec, FixtureError> {
        let mut spec = Spec::default();
        let process = ProcessBuilder::default()
            .terminal(self.terminal)
            .args(self.args.clone())
            .env(self.env.clone())
            .cwd("/")
            .build()
            .map_err(|e| FixtureError(format!("build process spec: {e}")))?;
        let mut process_with_defaults = spec.process().clone().unwrap_or_default();
        process_with_defaults
            .set_terminal(process.terminal())
            .set_args(process.args().clone())
            .set_env(process.env().clone())
            .set_cwd(process.cwd().clone());
        spec.set_process(Some(process_with_defaults));
        spec.set_hostname(Some("tether".into()));
        spec.set_root(Some(
            RootBuilder::default()
                .path("rootfs")
                .readonly(self.readonly_rootfs)
                .build()
                .map_err(|e| FixtureError(format!("build root spec: {e}")))?,
        ));
        let mut linux = spec.linux().clone().unwrap_or_else(|| {
            LinuxBuilder::default()
                .build()
                .expect("an empty linux section always builds")
        });
        if !self.pid_namespace {
            let namespaces: Vec<LinuxNamespace> = linux
                .namespaces()
                .clone()
                .unwrap_or_default()
                .into_iter()
                .filter(|ns| ns.typ() != LinuxNamespaceType::Pid)
                .collect();
            linux.set_namespaces(Some(namespaces));
        }
        if let Some(limit) = self.memory_limit {
            let memory = oci_spec::runtime::LinuxMemoryBuilder::default()
                .limit(limit)
                .build()
                .map_err(|e| FixtureError(format!("build memory spec: {e}")))?;
            let mut resources = linux.resources().clone().unwrap_or_default();
            resources.set_memory(Some(memory));
            linux.set_resources(Some(resources));
        }
        spec.set_linux(Some(linux));
        let mut mounts = spec.mounts().clone().unwrap_or_default();
        // A private writable /tmp, so a shared read-only rootfs still leaves tests somewhere to write.
        let mut tmp = Mount::default();
        tmp.set_destination(PathBuf::from("/tmp"))
            .set_source(Some(PathBuf::from("tmpfs")))
            .set_typ(Some("tmpfs".into()))
            .set_options(Some(vec![
                "nosuid".into(),
                "nodev".into(),
                "mode=1777".into(),
                "size=64m".into(),
            ]));
        mounts.push(tmp);
        mounts.extend(self.extra_mounts.iter().cloned());
        spec.set_mounts(Some(mounts));
        Ok(spec)
    }

    /// Writes a bundle into `dir` whose rootfs is the shared, read-only machine-wide one.
    pub fn create(&self, dir: impl Into<PathBuf>) -> Result<Bundle, FixtureError> {
        let dir = dir.into();
        let rootfs = BusyboxCache::get()?.rootfs();
        step(
            || format!("create {}", dir.display()),
            fs::create_dir_all(&dir),
        )?;
        let mut spec = self.to_spec()?;
        if let Some(root) = spec.root().clone() {
            let mut root = root;
            root.set_path(rootfs.clone()).set_readonly(Some(true));
            spec.set_root(Some(root));
        }
        Self::save(&spec, &dir, Some(rootfs))
    }

    /// Writes a self-contained bundle into `dir`: its own writable `rootfs/` and a `config.json`.
    pub fn create_standalone(&self, dir: impl Into<PathBuf>) -> Result<Bundle, FixtureError> {
        let dir = dir.into();
        BusyboxCache::get()?.populate(&dir.join("rootfs"))?;
        Self::save(&self.to_spec()?, &dir, None)
    }

    fn save(
        spec: &Spec,
        dir: &Path,
        shared_rootfs: Option<PathBuf>,
    ) -> Result<Bundle, FixtureError> {
        let config = dir.join("config.json");
        spec.save(&config)
            .map_err(|e| FixtureError(format!("write {}: {e}", config.display())))?;
        Ok(Bundle {
            dir: dir.to_owned(),
            shared_rootfs,
        })
    }
}

/// A bundle on disk.
#[derive(Debug, Clone)]
pub struct Bundle {
    dir: PathBuf,
    shared_rootfs: Option<PathBuf>,
}

impl Bundle {
    /// The bundle directory (what `runc --bundle` takes).
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// `config.json`.
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("config.json")
    }

    /// The root filesystem (shared and read-only, or the bundle's own).
    pub fn rootfs(&self) -> PathBuf {
        self.shared_rootfs
            .clone()
            .unwrap_or_else(|| self.dir.join("rootfs"))
    }
}

/// The host busybox copied once into the temp dir, with its applet list and a complete rootfs.
struct BusyboxCache {
    dir: PathBuf,
    applets: Vec<String>,
}

impl BusyboxCache {
    fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }

    fn get() -> Result<Self, FixtureError> {
        let meta = fs::metadata(HOST_BUSYBOX).map_err(|e| {
            FixtureError(format!(
                "{HOST_BUSYBOX}: {e}: install the static busybox with `apt-get install busybox-static` \
                 (or `cargo xtask deps`)"
            ))
        })?;
        let dir =
            std::env::temp_dir().join(format!("tether-busybox-v2-{}-{}", meta.len(), meta.mtime()));
        let list = dir.join("applets");
        // The applet list is written last, and the directory renamed into place whole.
        if let Ok(text) = fs::read_to_string(&list) {
            return Ok(BusyboxCache {
                dir,
                applets: text.lines().map(str::to_owned).collect(),
            });
        }
        Self::build(&dir)
    }

    /// Builds the cache in a private directory and renames it into place, so concurrent test processes
    /// never see half of it.
    fn build(dir: &Path) -> Result<Self, FixtureError> {
        let output = step(
            || format!("run {HOST_BUSYBOX} --list-full"),
            std::process::Command::new(HOST_BUSYBOX)
                .arg("--list-full")
                .output(),
        )?;
        if !output.status.success() {
            return Err(FixtureError(format!(
                "{HOST_BUSYBOX} --list-full failed ({}): is it Debian's busybox-static?",
                output.status
            )));
        }
        let applets: Vec<String> = String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter(|l| l.contains('/') && !l.ends_with('/'))
            .map(str::to_owned)
            .collect();
        let parent = dir.parent().unwrap_or(Path::new("/tmp"));
        let staging = step(
            || format!("make a staging dir in {}", parent.display()),
            tempfile::Builder::new()
                .prefix(".tether-busybox-")
                .tempdir_in(parent),
        )?;
        step(
            || "copy busybox".into(),
            fs::copy(HOST_BUSYBOX, staging.path().join("busybox")),
        )?;
        let cache = BusyboxCache {
            dir: staging.path().to_owned(),
            applets,
        };
        cache.populate(&cache.rootfs())?;
        step(
            || "write the applet list".into(),
            fs::write(staging.path().join("applets"), cache.applets.join("\n")),
        )?;
        let applets = cache.applets;
        let staged = staging.keep();
        if fs::rename(&staged, dir).is_err() {
            // Another process won the race; use theirs.
            let _ = fs::remove_dir_all(&staged);
        }
        Ok(BusyboxCache {
            dir: dir.to_owned(),
            applets,
        })
    }

    fn populate(&self, rootfs: &Path) -> Result<(), FixtureError> {
        for sub in [
            "bin", "sbin", "usr/bin", "usr/sbin", "etc", "proc", "dev", "sys", "root",
        ] {
            let path = rootfs.join(sub);
            step(
                || format!("create {}", path.display()),
                fs::create_dir_all(&path),
            )?;
        }
        let tmp = rootfs.join("tmp");
        step(
            || format!("create {}", tmp.display()),
            fs::create_dir_all(&tmp),
        )?;
        step(
            || format!("chmod {}", tmp.display()),
            fs::set_permissions(&tmp, fs::Permissions::from_mode(0o1777)),
        )?;
        let busybox = rootfs.join("bin/busybox");
        let cached = self.dir.join("busybox");
        if fs::hard_link(&cached, &busybox).is_err() {
            step(
                || format!("copy busybox to {}", busybox.display()),
                fs::copy(&cached, &busybox),
            )?;
        }
        for applet in &self.applets {
            if applet == "bin/busybox" {
                continue;
            }
            let depth = applet.matches('/').count();
            let target = format!("{}bin/busybox", "../".repeat(depth));
            let link = rootfs.join(applet);
            step(
                || format!("link {}", link.display()),
                symlink(&target, &link),
            )?;
        }
        let etc = rootfs.join("etc");
        step(
            || "write /etc/passwd".into(),
            fs::write(
                etc.join("passwd"),
                "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
            ),
        )?;
        step(
            || "write /etc/group".into(),
            fs::write(etc.join("group"), "root:x:0:\nnogroup:x:65534:\n"),
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_has_the_callers_process_and_no_terminal() {
        let spec = BundleSpec::new(["echo", "hi"])
            .env("A=b")
            .to_spec()
            .unwrap();
        let process = spec.process().as_ref().unwrap();
        assert_eq!(process.args().as_ref().unwrap(), &["echo", "hi"]);
        assert!(process.env().as_ref().unwrap().contains(&"A=b".to_owned()));
        assert_eq!(process.terminal(), Some(false));
        let namespaces = spec
            .linux()
            .as_ref()
            .unwrap()
            .namespaces()
            .as_ref()
            .unwrap();
        assert!(namespaces
            .iter()
            .any(|n| n.typ() == LinuxNamespaceType::Network));
        assert!(namespaces
            .iter()
            .any(|n| n.typ() == LinuxNamespaceType::Pid));
    }

    #[test]
    fn without_pid_namespace() {
        let spec = BundleSpec::shell("true")
            .pid_namespace(false)
            .to_spec()
            .unwrap();
        let namespaces = spec
            .linux()
            .as_ref()
            .unwrap()
            .namespaces()
            .as_ref()
            .unwrap();
        assert!(!namespaces
            .iter()
            .any(|n| n.typ() == LinuxNamespaceType::Pid));
    }

    #[test]
    fn bundle_has_a_busybox_rootfs() {
        let dir = tempfile::tempdir().unwrap();
        let bundle = BundleSpec::shell("true")
            .create(dir.path().join("b"))
            .unwrap();
        let rootfs = bundle.rootfs();
        for path in [
            "bin/sh",
            "bin/echo",
            "usr/bin/env",
            "etc/passwd",
            "etc/group",
        ] {
            assert!(rootfs.join(path).exists(), "{path} missing");
        }
        for dir in ["tmp", "proc", "dev", "sys"] {
            assert!(rootfs.join(dir).is_dir(), "{dir} missing");
        }
        let spec = Spec::load(bundle.config_path()).unwrap();
        let root = spec.root().as_ref().unwrap();
        assert_eq!(root.path(), &rootfs);
        assert_eq!(root.readonly(), Some(true));
        let tmp = spec
            .mounts()
            .as_ref()
            .unwrap()
            .iter()
            .find(|m| m.destination() == Path::new("/tmp"));
        assert_eq!(tmp.and_then(|m| m.typ().clone()).as_deref(), Some("tmpfs"));
    }

    #[test]
    fn standalone_bundle_has_its_own_rootfs() {
        let dir = tempfile::tempdir().unwrap();
        let bundle = BundleSpec::shell("true")
            .create_standalone(dir.path().join("b"))
            .unwrap();
        assert_eq!(bundle.rootfs(), dir.path().join("b/rootfs"));
        assert!(bundle.rootfs().join("bin/sh").exists());
        let spec = Spec::load(bundle.config_path()).unwrap();
        assert_eq!(spec.root().as_ref().unwrap().path(), Path::new("rootfs"));
    }
}
