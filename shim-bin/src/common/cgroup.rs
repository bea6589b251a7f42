//! The container's cgroup, found once from `/proc/<init>/cgroup` while the init runs: where its
//! metrics are read (see the ttrpc door's Stats) and its memory limit's OOM kills are watched.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Where a container's cgroup files are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cgroup {
    /// cgroup v1: a directory per controller.
    V1 {
        memory: PathBuf,
        cpuacct: PathBuf,
        pids: PathBuf,
    },
    /// cgroup v2: one directory.
    V2 { dir: PathBuf },
}

const CGROUP_ROOT: &str = "/sys/fs/cgroup";

impl Cgroup {
    /// The cgroup of process `pid`, as the host's `/sys/fs/cgroup` lays it out.
    pub fn of_process(pid: i32) -> std::io::Result<Cgroup> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))?;
        let v1 = Path::new(CGROUP_ROOT).join("memory").is_dir();
        Cgroup::from_proc(&text, Path::new(CGROUP_ROOT), v1).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("no cgroup of pid {pid} in /proc/{pid}/cgroup"),
            )
        })
    }

    /// One of its files, by name (`memory.stat`, `cpu.stat`): in cgroup v1 the name's prefix is the
    /// controller whose directory holds it. None when it cannot be read.
    pub fn read(&self, file: &str) -> Option<String> {
        let dir = match self {
            Cgroup::V1 { memory, .. } if file.starts_with("memory.") => memory,
            Cgroup::V1 { cpuacct, .. } if file.starts_with("cpuacct.") => cpuacct,
            Cgroup::V1 { pids, .. } => pids,
            Cgroup::V2 { dir } => dir,
        };
        std::fs::read_to_string(dir.join(file)).ok()
    }

    /// Reads `/proc/PID/cgroup` text: `N:controllers:/path` lines (`0::/path` for v2).
    pub fn from_proc(text: &str, root: &Path, v1: bool) -> Option<Cgroup> {
        let mut paths: HashMap<&str, &str> = HashMap::new();
        for line in text.lines() {
            let mut fields = line.splitn(3, ':');
            let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
            if controllers.is_empty() {
                paths.insert("", path);
            }
            for controller in controllers.split(',') {
                paths.insert(controller, path);
            }
        }
        let under = |mount: &str, path: &str| root.join(mount).join(path.trim_start_matches('/'));
        if v1 {
            Some(Cgroup::V1 {
                memory: under("memory", paths.get("memory")?),
                cpuacct: under("cpuacct", paths.get("cpuacct")?),
                pids: under("pids", paths.get("pids")?),
            })
        } else {
            Some(Cgroup::V2 {
                dir: under("", paths.get("")?),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cgroup_is_found_in_both_layouts() {
        let hybrid = "10:hugetlb:/\n4:memory:/default/web\n2:cpuacct:/default/web\n\
                      1:cpu:/default/web\n8:pids:/default/web\n0::/default/web\n";
        assert_eq!(
            Cgroup::from_proc(hybrid, Path::new("/sys/fs/cgroup"), true),
            Some(Cgroup::V1 {
                memory: "/sys/fs/cgroup/memory/default/web".into(),
                cpuacct: "/sys/fs/cgroup/cpuacct/default/web".into(),
                pids: "/sys/fs/cgroup/pids/default/web".into(),
            })
        );
        let joined = "3:cpu,cpuacct:/k8s/pod1/c1\n4:memory:/k8s/pod1/c1\n5:pids:/k8s/pod1/c1\n";
        assert!(matches!(
            Cgroup::from_proc(joined, Path::new("/sys/fs/cgroup"), true),
            Some(Cgroup::V1 { cpuacct, .. }) if cpuacct == Path::new("/sys/fs/cgroup/cpuacct/k8s/pod1/c1")
        ));
        assert_eq!(
            Cgroup::from_proc(
                "0::/system.slice/web.scope\n",
                Path::new("/sys/fs/cgroup"),
                false
            ),
            Some(Cgroup::V2 {
                dir: "/sys/fs/cgroup/system.slice/web.scope".into()
            })
        );
        assert_eq!(Cgroup::from_proc("garbage", Path::new("/x"), true), None);
    }

    #[test]
    fn a_v1_file_is_read_from_its_controllers_directory() {
        let root = tempfile::tempdir().unwrap();
        let dir = |name: &str| {
            let dir = root.path().join(name);
            std::fs::create_dir(&dir).unwrap();
            std::fs::write(dir.join(format!("{name}.x")), name).unwrap();
            dir
        };
        let cgroup = Cgroup::V1 {
            memory: dir("memory"),
            cpuacct: dir("cpuacct"),
            pids: dir("pids"),
        };
        for name in ["memory", "cpuacct", "pids"] {
            assert_eq!(cgroup.read(&format!("{name}.x")).as_deref(), Some(name));
        }
        assert_eq!(cgroup.read("memory.missing"), None);
    }
}
