//! Task metrics read straight from the container's cgroup files, as containerd's own shim does:
//! the kubelet asks every 10 to 15 s for every container, and a `runc events --stats` process per
//! call costs 7 to 10 times as much.
//!
//! The cgroup is found once, from `/proc/<init>/cgroup`, while the init runs. cgroup v1 (one
//! hierarchy per controller) answers `io.containerd.cgroups.v1.Metrics`, v2 (the unified
//! hierarchy) `io.containerd.cgroups.v2.Metrics`, as containerd expects for each; the files are read
//! by [`crate::common::metrics`], which `tether stats` shares.

use crate::common::cgroup::Cgroup;
use crate::common::metrics::{v1, v1_metrics, v2_metrics};
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::Message;

/// A cgroup's metrics now, as the `Any` a Stats answer carries.
pub fn of_cgroup(cgroup: &Cgroup) -> std::io::Result<Any> {
    let read = |file: &str| cgroup.read(file);
    let (type_url, bytes) = match cgroup {
        Cgroup::V1 { .. } => (
            "io.containerd.cgroups.v1.Metrics",
            v1_metrics(&read).write_to_bytes(),
        ),
        Cgroup::V2 { .. } => (
            "io.containerd.cgroups.v2.Metrics",
            v2_metrics(&read).write_to_bytes(),
        ),
    };
    let mut any = Any::new();
    any.type_url = type_url.into();
    any.value = bytes.map_err(std::io::Error::other)?;
    Ok(any)
}

/// Metrics from the runtime's own figures (`runc events --stats`), for a container whose cgroup
/// is unknown: v1's layout, as containerd's runc shim answers then.
pub fn of_runtime(stats: &shim_runc::Stats) -> shim_core::Result<Any> {
    let per_cpu = stats.raw["cpu"]["usage"]["percpu"]
        .as_array()
        .map(|cpus| cpus.iter().filter_map(|v| v.as_u64()).collect())
        .unwrap_or_default();
    let metrics = v1::Metrics {
        cpu: Some(v1::CPUStat {
            usage: Some(v1::CPUUsage {
                total: stats.cpu.total,
                kernel: stats.cpu.kernel,
                user: stats.cpu.user,
                per_cpu,
                ..Default::default()
            })
            .into(),
            ..Default::default()
        })
        .into(),
        memory: Some(v1::MemoryStat {
            usage: Some(v1::MemoryEntry {
                usage: stats.memory.usage,
                limit: stats.memory.limit,
                max: stats.memory.max,
                failcnt: stats.memory.failcnt,
                ..Default::default()
            })
            .into(),
            ..Default::default()
        })
        .into(),
        pids: Some(v1::PidsStat {
            current: stats.pids.current,
            limit: stats.pids.limit,
            ..Default::default()
        })
        .into(),
        ..Default::default()
    };
    let mut any = Any::new();
    any.type_url = "io.containerd.cgroups.v1.Metrics".into();
    any.value = metrics
        .write_to_bytes()
        .map_err(|e| shim_core::Error::internal(e.to_string()))?;
    Ok(any)
}
