//! A container's cgroup figures as containerd's metrics messages: cgroup v1's controllers'
//! files as `io.containerd.cgroups.v1.Metrics`, the unified hierarchy's as
//! `io.containerd.cgroups.v2.Metrics`, each read as containerd's cgroups library reads it (`max` is
//! unlimited). The ttrpc door answers Stats with them and `tether stats` shows them. The parsing
//! is pure and takes the files through a reader, so both layouts are tested on fixture text.

pub use containerd_shim_protos::cgroups::metrics as v1;
pub use containerd_shim_protos::cgroups_v2::metrics as v2;
use std::collections::HashMap;

/// Clock ticks per second, the unit of `cpuacct.stat`.
fn clock_ticks() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .and_then(|ticks| u64::try_from(ticks).ok())
        .filter(|&ticks| ticks > 0)
        .unwrap_or(100)
}

/// A number file; `max` (no limit) as `unlimited`.
fn number(text: Option<String>, unlimited: u64) -> u64 {
    match text.as_deref().map(str::trim) {
        Some("max") => unlimited,
        Some(value) => value.parse().unwrap_or(0),
        None => 0,
    }
}

/// `key value` lines (memory.stat, cpu.stat, cpuacct.stat, memory.events).
fn keyed(text: Option<String>) -> HashMap<String, u64> {
    text.unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let (key, value) = line.split_once(' ')?;
            Some((key.to_owned(), value.trim().parse().ok()?))
        })
        .collect()
}

/// v2's `io.stat`: one `MAJ:MIN key=value ...` line per device. The figures containerd's cgroups
/// library reads are kept; others (`dbytes`, `dios`, io.cost's) are passed over, as a line that
/// does not name a device is.
fn io_entries(text: Option<String>) -> Vec<v2::IOEntry> {
    text.unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (major, minor) = fields.next()?.split_once(':')?;
            let mut entry = v2::IOEntry {
                major: major.parse().ok()?,
                minor: minor.parse().ok()?,
                ..Default::default()
            };
            for field in fields {
                let Some((key, value)) = field.split_once('=') else {
                    continue;
                };
                let value = value.parse().unwrap_or(0);
                match key {
                    "rbytes" => entry.rbytes = value,
                    "wbytes" => entry.wbytes = value,
                    "rios" => entry.rios = value,
                    "wios" => entry.wios = value,
                    _ => {}
                }
            }
            Some(entry)
        })
        .collect()
}

/// cgroup v1 metrics from the controllers' files.
pub fn v1_metrics(read: &dyn Fn(&str) -> Option<String>) -> v1::Metrics {
    let ns_per_tick = 1_000_000_000 / clock_ticks();
    let ticks = keyed(read("cpuacct.stat"));
    let per_cpu = read("cpuacct.usage_percpu")
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|n| n.parse().ok())
        .collect();
    let usage = v1::CPUUsage {
        total: number(read("cpuacct.usage"), 0),
        user: ticks
            .get("user")
            .copied()
            .unwrap_or(0)
            .saturating_mul(ns_per_tick),
        kernel: ticks
            .get("system")
            .copied()
            .unwrap_or(0)
            .saturating_mul(ns_per_tick),
        per_cpu,
        ..Default::default()
    };
    let entry = |prefix: &str| v1::MemoryEntry {
        usage: number(read(&format!("{prefix}usage_in_bytes")), 0),
        limit: number(read(&format!("{prefix}limit_in_bytes")), 0),
        max: number(read(&format!("{prefix}max_usage_in_bytes")), 0),
        failcnt: number(read(&format!("{prefix}failcnt")), 0),
        ..Default::default()
    };
    let stat = keyed(read("memory.stat"));
    let get = |key: &str| stat.get(key).copied().unwrap_or(0);
    let memory = v1::MemoryStat {
        cache: get("cache"),
        rss: get("rss"),
        rss_huge: get("rss_huge"),
        mapped_file: get("mapped_file"),
        dirty: get("dirty"),
        writeback: get("writeback"),
        pg_pg_in: get("pgpgin"),
        pg_pg_out: get("pgpgout"),
        pg_fault: get("pgfault"),
        pg_maj_fault: get("pgmajfault"),
        inactive_anon: get("inactive_anon"),
        active_anon: get("active_anon"),
        inactive_file: get("inactive_file"),
        active_file: get("active_file"),
        unevictable: get("unevictable"),
        hierarchical_memory_limit: get("hierarchical_memory_limit"),
        hierarchical_swap_limit: get("hierarchical_memsw_limit"),
        total_cache: get("total_cache"),
        total_rss: get("total_rss"),
        total_rss_huge: get("total_rss_huge"),
        total_mapped_file: get("total_mapped_file"),
        total_dirty: get("total_dirty"),
        total_writeback: get("total_writeback"),
        total_pg_pg_in: get("total_pgpgin"),
        total_pg_pg_out: get("total_pgpgout"),
        total_pg_fault: get("total_pgfault"),
        total_pg_maj_fault: get("total_pgmajfault"),
        total_inactive_anon: get("total_inactive_anon"),
        total_active_anon: get("total_active_anon"),
        total_inactive_file: get("total_inactive_file"),
        total_active_file: get("total_active_file"),
        total_unevictable: get("total_unevictable"),
        usage: Some(entry("memory.")).into(),
        swap: Some(entry("memory.memsw.")).into(),
        kernel: Some(entry("memory.kmem.")).into(),
        kernel_tcp: Some(entry("memory.kmem.tcp.")).into(),
        ..Default::default()
    };
    v1::Metrics {
        cpu: Some(v1::CPUStat {
            usage: Some(usage).into(),
            ..Default::default()
        })
        .into(),
        memory: Some(memory).into(),
        pids: Some(v1::PidsStat {
            current: number(read("pids.current"), 0),
            limit: number(read("pids.max"), 0),
            ..Default::default()
        })
        .into(),
        ..Default::default()
    }
}

/// cgroup v2 metrics from the unified directory's files.
pub fn v2_metrics(read: &dyn Fn(&str) -> Option<String>) -> v2::Metrics {
    let cpu = keyed(read("cpu.stat"));
    let cpu_get = |key: &str| cpu.get(key).copied().unwrap_or(0);
    let stat = keyed(read("memory.stat"));
    let get = |key: &str| stat.get(key).copied().unwrap_or(0);
    let events = keyed(read("memory.events"));
    let event = |key: &str| events.get(key).copied().unwrap_or(0);
    v2::Metrics {
        pids: Some(v2::PidsStat {
            current: number(read("pids.current"), 0),
            // `max` is unlimited, as containerd's cgroups library reads v2's limits.
            limit: number(read("pids.max"), u64::MAX),
            ..Default::default()
        })
        .into(),
        cpu: Some(v2::CPUStat {
            usage_usec: cpu_get("usage_usec"),
            user_usec: cpu_get("user_usec"),
            system_usec: cpu_get("system_usec"),
            nr_periods: cpu_get("nr_periods"),
            nr_throttled: cpu_get("nr_throttled"),
            throttled_usec: cpu_get("throttled_usec"),
            ..Default::default()
        })
        .into(),
        memory: Some(v2::MemoryStat {
            anon: get("anon"),
            file: get("file"),
            kernel_stack: get("kernel_stack"),
            slab: get("slab"),
            sock: get("sock"),
            shmem: get("shmem"),
            file_mapped: get("file_mapped"),
            file_dirty: get("file_dirty"),
            file_writeback: get("file_writeback"),
            anon_thp: get("anon_thp"),
            inactive_anon: get("inactive_anon"),
            active_anon: get("active_anon"),
            inactive_file: get("inactive_file"),
            active_file: get("active_file"),
            unevictable: get("unevictable"),
            slab_reclaimable: get("slab_reclaimable"),
            slab_unreclaimable: get("slab_unreclaimable"),
            pgfault: get("pgfault"),
            pgmajfault: get("pgmajfault"),
            usage: number(read("memory.current"), 0),
            usage_limit: number(read("memory.max"), u64::MAX),
            swap_usage: number(read("memory.swap.current"), 0),
            swap_limit: number(read("memory.swap.max"), u64::MAX),
            max_usage: number(read("memory.peak"), 0),
            ..Default::default()
        })
        .into(),
        memory_events: Some(v2::MemoryEvents {
            low: event("low"),
            high: event("high"),
            max: event("max"),
            oom: event("oom"),
            oom_kill: event("oom_kill"),
            ..Default::default()
        })
        .into(),
        io: Some(v2::IOStat {
            usage: io_entries(read("io.stat")),
            ..Default::default()
        })
        .into(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_files_become_v1_metrics() {
        let files: HashMap<&str, &str> = [
            ("cpuacct.usage", "123456789\n"),
            ("cpuacct.usage_percpu", "100 200 \n"),
            ("cpuacct.stat", "user 250\nsystem 50\n"),
            ("memory.usage_in_bytes", "4096\n"),
            ("memory.limit_in_bytes", "67108864\n"),
            ("memory.max_usage_in_bytes", "8192\n"),
            ("memory.failcnt", "3\n"),
            ("memory.stat", "cache 10\nrss 20\ntotal_inactive_file 30\n"),
            ("pids.current", "2\n"),
            ("pids.max", "max\n"),
        ]
        .into_iter()
        .collect();
        let metrics = v1_metrics(&|name| files.get(name).map(|s| s.to_string()));
        let usage = &metrics.cpu.usage;
        assert_eq!(
            (usage.total, usage.per_cpu.clone()),
            (123456789, vec![100, 200])
        );
        let ns_per_tick = 1_000_000_000 / clock_ticks();
        assert_eq!(
            (usage.user, usage.kernel),
            (250 * ns_per_tick, 50 * ns_per_tick)
        );
        let memory = &metrics.memory;
        assert_eq!(
            (
                memory.usage.usage,
                memory.usage.limit,
                memory.usage.max,
                memory.usage.failcnt
            ),
            (4096, 67108864, 8192, 3)
        );
        assert_eq!(
            (memory.cache, memory.rss, memory.total_inactive_file),
            (10, 20, 30)
        );
        assert_eq!((metrics.pids.current, metrics.pids.limit), (2, 0));
    }

    #[test]
    fn v2_files_become_v2_metrics() {
        let files: HashMap<&str, &str> = [
            (
                "cpu.stat",
                "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nnr_throttled 4\n",
            ),
            ("memory.current", "4096\n"),
            ("memory.max", "max\n"),
            ("memory.peak", "9000\n"),
            ("memory.stat", "anon 100\nfile 200\ninactive_file 50\n"),
            ("memory.events", "low 0\nhigh 0\nmax 7\noom 1\noom_kill 1\n"),
            ("pids.current", "3\n"),
            ("pids.max", "100\n"),
            (
                "io.stat",
                "254:0 rbytes=1048576 wbytes=4096 rios=16 wios=1 dbytes=0 dios=0\n\
                 7:0 rbytes=512 wbytes=0 rios=1 wios=0 dbytes=0 dios=0 cost.vrate=1\n\
                 garbage line\n",
            ),
        ]
        .into_iter()
        .collect();
        let metrics = v2_metrics(&|name| files.get(name).map(|s| s.to_string()));
        assert_eq!(
            (
                metrics.cpu.usage_usec,
                metrics.cpu.user_usec,
                metrics.cpu.system_usec
            ),
            (1500, 1000, 500)
        );
        assert_eq!(metrics.cpu.nr_throttled, 4);
        let memory = &metrics.memory;
        assert_eq!(
            (memory.usage, memory.usage_limit, memory.max_usage),
            (4096, u64::MAX, 9000)
        );
        assert_eq!(
            (memory.anon, memory.file, memory.inactive_file),
            (100, 200, 50)
        );
        assert_eq!(
            (metrics.memory_events.max, metrics.memory_events.oom_kill),
            (7, 1)
        );
        assert_eq!((metrics.pids.current, metrics.pids.limit), (3, 100));
        let io: Vec<_> = metrics
            .io
            .usage
            .iter()
            .map(|e| (e.major, e.minor, e.rbytes, e.wbytes, e.rios, e.wios))
            .collect();
        assert_eq!(io, [(254, 0, 1048576, 4096, 16, 1), (7, 0, 512, 0, 1, 0)]);
    }

    #[test]
    fn missing_or_garbled_files_give_zeros_not_errors() {
        let metrics = v1_metrics(&|_| Some("not a number\n".to_owned()));
        assert_eq!(metrics.cpu.usage.total, 0);
        let metrics = v2_metrics(&|_| None);
        assert_eq!(metrics.memory.usage_limit, 0);
    }
}
