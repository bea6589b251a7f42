//! Runtime specs made for the user: `tether spec` (a default config.json, as `runc spec`) and the
//! bundle `tether run --rootfs DIR [flags] ID -- CMD...` writes under the container's state dir
//! (what the runtime got is what `tether state`'s bundle holds).

use crate::cli::args::{NetworkArg, RootfsArgs, RunArgs};
use crate::cli::error::{Error, Result};
use oci_spec::runtime::{
    LinuxCpuBuilder, LinuxMemoryBuilder, LinuxNamespaceType, LinuxPidsBuilder, LinuxResources,
    Mount, Process, Root, Spec,
};
use std::path::{Path, PathBuf};

/// The default spec: runc's own defaults (namespaces, mounts, capabilities, `sh`), its rootfs at
/// `rootfs` in the bundle.
pub fn default_spec() -> Spec {
    Spec::default()
}

/// `tether spec [--bundle DIR]`: writes DIR/config.json, refusing to overwrite one.
pub fn write_default(bundle: &Path) -> Result<u8> {
    let path = bundle.join("config.json");
    if path.exists() {
        return Err(Error::invalid(format!(
            "{} exists already: remove it first",
            path.display()
        )));
    }
    default_spec()
        .save(&path)
        .map_err(|e| Error::failed(format!("{}: {e}", path.display())))?;
    Ok(0)
}

/// The spec for `run --rootfs`: the default spec with the flags applied, its root `root_path`
/// (`rootfs_dir` itself, or the overlay on it), users looked up in `rootfs_dir`. Every value is
/// checked here, before anything is made.
pub fn for_rootfs(
    args: &RunArgs,
    rootfs: &RootfsArgs,
    rootfs_dir: &Path,
    root_path: &Path,
    id: &str,
    state_dir: &Path,
) -> Result<Spec> {
    let mut spec = default_spec();
    // The container's name is its hostname unless --hostname says otherwise, as docker does.
    let name: String = id
        .chars()
        .map(|c| if c == '_' { '-' } else { c })
        .take(63)
        .collect();
    spec.set_hostname(Some(name));
    let mut root = Root::default();
    root.set_path(root_path.to_owned())
        .set_readonly(Some(rootfs.read_only));
    spec.set_root(Some(root));
    let mut process: Process = spec.process().clone().unwrap_or_default();
    if !args.command.is_empty() {
        process.set_args(Some(args.command.clone()));
    }
    process.set_terminal(Some(args.tty));
    let mut env = process.env().clone().unwrap_or_default();
    // The default spec says TERM=xterm; without a terminal there is none to name (as docker).
    if !args.tty {
        env.retain(|entry| !entry.starts_with("TERM="));
    }
    for entry in environment(&rootfs.env, &rootfs.env_files)? {
        let key = entry.split_once('=').map_or("", |(key, _)| key).to_owned();
        env.retain(|existing| existing.split_once('=').map(|(k, _)| k) != Some(key.as_str()));
        env.push(entry);
    }
    process.set_env(Some(env));
    if let Some(dir) = &rootfs.workdir {
        if !dir.starts_with('/') {
            return Err(Error::invalid(format!("-w {dir:?}: not an absolute path")));
        }
        process.set_cwd(dir.into());
    }
    if rootfs.init {
        let mut argv = process.args().clone().unwrap_or_default();
        argv.insert(0, crate::init::PATH.to_owned());
        process.set_args(Some(argv));
    }
    if let Some(user) = &rootfs.user {
        process.set_user(
            crate::common::users::resolve(user, Some(rootfs_dir)).map_err(Error::invalid)?,
        );
    }
    spec.set_process(Some(process));
    if let Some(hostname) = &rootfs.hostname {
        let valid = !hostname.is_empty()
            && hostname.len() <= 64
            && hostname
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
        if !valid {
            return Err(Error::invalid(format!(
                "--hostname {hostname:?}: 1 to 64 letters, digits, '-' or '.'"
            )));
        }
        spec.set_hostname(Some(hostname.clone()));
    }
    let mut mounts = spec.mounts().clone().unwrap_or_default();
    for volume in &rootfs.volumes {
        mounts.push(bind_mount(volume)?);
    }
    for path in &rootfs.tmpfs {
        mounts.push(tmpfs_mount(path)?);
    }
    if rootfs.init {
        // After the runtime's /dev tmpfs, so the mount point is made there, not in the rootfs.
        let mut init = Mount::default();
        init.set_destination(crate::init::PATH.into())
            .set_typ(Some("bind".into()))
            .set_source(Some(crate::init::binary().map_err(Error::invalid)?))
            .set_options(Some(
                ["bind", "ro", "nosuid", "nodev"]
                    .map(str::to_owned)
                    .to_vec(),
            ));
        mounts.push(init);
    }
    spec.set_mounts(Some(mounts));
    let mut linux = spec.linux().clone().unwrap_or_default();
    let mut resources: LinuxResources = linux.resources().clone().unwrap_or_default();
    if let Some(limit) = rootfs.memory {
        let limit = i64::try_from(limit).map_err(|_| Error::invalid("--memory: too large"))?;
        let memory = LinuxMemoryBuilder::default()
            .limit(limit)
            .build()
            .map_err(|e| Error::invalid(format!("--memory: {e}")))?;
        resources.set_memory(Some(memory));
    }
    // 0, as docker has it: no limit.
    if let Some(cpus) = rootfs.cpus.filter(|&cpus| cpus != 0.0) {
        let host = std::thread::available_parallelism().map_or(1024, |n| n.get());
        if !(0.01..=host as f64).contains(&cpus) {
            return Err(Error::invalid(format!(
                "--cpus {cpus}: between 0.01 and this host's {host} (0: no limit)"
            )));
        }
        const PERIOD: u64 = 100_000;
        let cpu = LinuxCpuBuilder::default()
            .period(PERIOD)
            .quota((cpus * PERIOD as f64).round() as i64)
            .build()
            .map_err(|e| Error::invalid(format!("--cpus: {e}")))?;
        resources.set_cpu(Some(cpu));
    }
    // 0 and -1, as docker has them: no limit.
    if let Some(limit) = rootfs.pids_limit.filter(|&limit| limit > 0) {
        let pids = LinuxPidsBuilder::default()
            .limit(limit)
            .build()
            .map_err(|e| Error::invalid(format!("--pids-limit: {e}")))?;
        resources.set_pids(Some(pids));
    }
    linux.set_resources(Some(resources));
    linux.set_cgroups_path(Some(cgroup_path(state_dir, id)));
    if network_mode(rootfs)? == NetworkArg::Host {
        // No namespace of its own: the host's network.
        if let Some(namespaces) = linux.namespaces_mut() {
            namespaces.retain(|ns| ns.typ() != LinuxNamespaceType::Network);
        }
    }
    spec.set_linux(Some(linux));
    Ok(spec)
}

/// The container's cgroup: `/tether/<id>-<12 hex of its state dir>`, its own whatever other state
/// dir runs a container of the same id (without one, runc would use `/<id>` for both: the second's
/// limits replaced the first's, and stats counted both).
pub fn cgroup_path(state_dir: &Path, id: &str) -> PathBuf {
    // FNV-1a: stable across builds and machines, and short.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in state_dir.as_os_str().as_encoded_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    PathBuf::from(format!("/tether/{id}-{:012x}", hash >> 16))
}

/// `--network`, as `-p` makes it: bridge when ports are published (and refused with another).
pub fn network_mode(rootfs: &RootfsArgs) -> Result<NetworkArg> {
    match (rootfs.network, rootfs.publish.is_empty()) {
        (None, true) => Ok(NetworkArg::None),
        (None, false) | (Some(NetworkArg::Bridge), _) => Ok(NetworkArg::Bridge),
        (Some(mode), true) => Ok(mode),
        (Some(mode), false) => Err(Error::invalid(format!(
            "-p publishes a port of the bridge network, not with --network {}",
            if mode == NetworkArg::Host {
                "host"
            } else {
                "none"
            }
        ))),
    }
}

/// The most of an `--env-file` read.
const MAX_ENV_FILE: u64 = 1 << 20;

/// The environment `--env-file`s and `-e`s give, as docker takes them, in order (a later entry of
/// a key wins): `KEY=VALUE`, or `KEY` alone for the caller's own value (left out when the caller
/// has none). A file has one entry a line; blank lines and `#` comments are passed over.
pub fn environment(entries: &[String], files: &[PathBuf]) -> Result<Vec<String>> {
    let mut env = Vec::new();
    let mut take = |entry: &str, from: &dyn Fn() -> String| -> Result<()> {
        match entry.split_once('=') {
            Some(("", _)) => Err(Error::invalid(format!("{}: {entry:?} has no name", from()))),
            Some(_) => {
                env.push(entry.to_owned());
                Ok(())
            }
            None if entry.is_empty() || entry.contains(char::is_whitespace) => Err(Error::invalid(
                format!("{}: {entry:?} is not KEY=VALUE or KEY", from()),
            )),
            None => {
                if let Some(value) = std::env::var_os(entry) {
                    env.push(format!("{entry}={}", value.to_string_lossy()));
                }
                Ok(())
            }
        }
    };
    for file in files {
        use std::io::Read;
        let mut text = String::new();
        std::fs::File::open(file)
            .and_then(|f| f.take(MAX_ENV_FILE).read_to_string(&mut text))
            .map_err(|e| Error::invalid(format!("--env-file {}: {e}", file.display())))?;
        for (n, line) in text.lines().enumerate() {
            let line = line.trim_start();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            take(line, &|| {
                format!("--env-file {} line {}", file.display(), n + 1)
            })?;
        }
    }
    for entry in entries {
        take(entry, &|| "-e".to_owned())?;
    }
    Ok(env)
}

/// `--tmpfs PATH[:OPTIONS]`: an empty tmpfs at PATH, gone with the container (writable where
/// `--read-only` makes the rest not); OPTIONS as mount(8)'s (`size=64m,mode=1777`).
fn tmpfs_mount(spec: &str) -> Result<Mount> {
    let (path, options) = spec.split_once(':').unwrap_or((spec, ""));
    let valid_path =
        path.starts_with('/') && path != "/" && !path.split('/').any(|part| part == "..");
    if !valid_path {
        return Err(Error::invalid(format!(
            "--tmpfs {spec:?}: not an absolute path in the container (PATH[:OPTIONS])"
        )));
    }
    let mut all = vec!["nosuid".to_owned(), "nodev".to_owned()];
    if options.is_empty() {
        all.push("mode=1777".into());
    }
    for option in options.split(',').filter(|o| !o.is_empty()) {
        let allowed = ["size=", "mode=", "uid=", "gid=", "nr_inodes="]
            .iter()
            .any(|prefix| option.starts_with(prefix))
            || ["ro", "rw", "noexec", "exec"].contains(&option);
        if !allowed {
            return Err(Error::invalid(format!(
                "--tmpfs {spec:?}: option {option:?} (size=, mode=, uid=, gid=, nr_inodes=, ro, noexec)"
            )));
        }
        all.push(option.to_owned());
    }
    let mut mount = Mount::default();
    mount
        .set_destination(PathBuf::from(path))
        .set_source(Some(PathBuf::from("tmpfs")))
        .set_typ(Some("tmpfs".into()))
        .set_options(Some(all));
    Ok(mount)
}

/// `-v SRC:DST[:ro]`: a bind mount of the host's SRC (which must exist) at DST.
fn bind_mount(volume: &str) -> Result<Mount> {
    let mut parts = volume.split(':');
    let (Some(source), Some(destination)) = (parts.next(), parts.next()) else {
        return Err(Error::invalid(format!("-v {volume:?}: not SRC:DST[:ro]")));
    };
    let mode = match parts.next() {
        None | Some("rw") => "rw",
        Some("ro") => "ro",
        Some(other) => {
            return Err(Error::invalid(format!(
                "-v {volume:?}: {other:?} is neither ro nor rw"
            )))
        }
    };
    if parts.next().is_some() || !destination.starts_with('/') {
        return Err(Error::invalid(format!(
            "-v {volume:?}: not SRC:DST[:ro] with an absolute DST"
        )));
    }
    let source =
        std::path::absolute(source).map_err(|e| Error::invalid(format!("-v {volume:?}: {e}")))?;
    if !source.exists() {
        return Err(Error::invalid(format!(
            "-v {volume:?}: {} does not exist",
            source.display()
        )));
    }
    let mut mount = Mount::default();
    mount
        .set_destination(PathBuf::from(destination))
        .set_source(Some(source))
        .set_typ(Some("bind".into()))
        .set_options(Some(vec!["rbind".into(), mode.into()]));
    Ok(mount)
}
