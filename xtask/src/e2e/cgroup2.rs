//! `cargo xtask e2e cgroup2`: tether on a kernel whose cgroups are cgroup v2 alone, in a guest
//! (see [`crate::guest`]). The host side boots the guest with the workspace shared into it and
//! runs this same program there with `--inside`, which runs the cases.

use super::*;
use crate::bench::containerd::PrivateContainerd;
use crate::guest;

/// The whole suite's bound, boot included.
const GUEST_TIMEOUT: Duration = Duration::from_secs(900);

/// Entry point: `e2e cgroup2` on the host, `e2e cgroup2 --inside` in the guest.
pub fn run(args: &[String]) -> Result<(), String> {
    match args {
        [] => {}
        [flag] if flag == "--inside" => return inside(),
        other => return Err(format!("e2e cgroup2: unknown arguments {other:?}")),
    }
    if !can_run("cgroup2", &[], guest::unavailable)? {
        return Ok(());
    }
    crate::bench::install_interrupt_handler();
    let workspace = crate::util::workspace_root();
    let tether = crate::util::build_tether(true)?;
    // This program, as it runs: cargo may have replaced the file since (`e2e cri` builds xtask
    // again with its feature on), so a copy of the running one goes where the guest sees it.
    let xtask = guest::cache_dir().join("xtask-inside");
    std::fs::create_dir_all(guest::cache_dir()).map_err(|e| format!("cgroup2: {e}"))?;
    let partial = xtask.with_extension("partial");
    std::fs::copy("/proc/self/exe", &partial)
        .and_then(|_| std::fs::rename(&partial, &xtask))
        .map_err(|e| format!("cgroup2: copy this program to {}: {e}", xtask.display()))?;
    for shared in [&tether, &xtask] {
        if !shared.starts_with(&workspace) {
            return Err(format!(
                "cgroup2: {} is outside the workspace {}, which is all the guest sees",
                shared.display(),
                workspace.display()
            ));
        }
    }
    let prepared = Instant::now();
    let guest = guest::prepare()?;
    println!(
        "e2e cgroup2: kernel {} ready in {:.1} s; booting the guest",
        guest.release,
        prepared.elapsed().as_secs_f64()
    );
    let env = [
        (
            "TETHER_E2E",
            std::env::var("TETHER_E2E").unwrap_or_default(),
        ),
        ("TETHER_GUEST_TETHER", tether.to_string_lossy().into_owned()),
    ];
    let command = format!(
        "{} e2e cgroup2 --inside",
        guest::shell_quote(&xtask.to_string_lossy())
    );
    let outcome = guest::run(&guest, &workspace, &command, &env, GUEST_TIMEOUT)?;
    println!(
        "e2e cgroup2: the guest's command started {} after qemu's; {:.1} s in all",
        outcome
            .boot
            .map_or("?".to_owned(), |b| format!("{:.1} s", b.as_secs_f64())),
        outcome.total.as_secs_f64()
    );
    if outcome.code == 0 {
        Ok(())
    } else {
        Err(format!(
            "e2e cgroup2: failed in the guest (exit {})",
            outcome.code
        ))
    }
}

/// One case's result, said as it ends; the failures are gathered.
struct Tally {
    passed: usize,
    failed: Vec<String>,
}

impl Tally {
    fn case(&mut self, name: &str, check: impl FnOnce() -> Check) {
        let started = Instant::now();
        match check() {
            Ok(()) => {
                self.passed += 1;
                println!(
                    "e2e cgroup2 {name} ... ok ({:.1} s)",
                    started.elapsed().as_secs_f64()
                );
            }
            Err(message) => {
                println!("e2e cgroup2 {name} ... FAILED: {message}");
                self.failed.push(format!("{name}: {message}"));
            }
        }
    }
}

/// In the guest: every case, each said as it ends.
fn inside() -> Result<(), String> {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    expect(
        !mounts.contains(" - cgroup ") && mounts.contains(" /sys/fs/cgroup "),
        || "the guest has a cgroup v1 hierarchy, or no cgroup2 at /sys/fs/cgroup".into(),
    )?;
    let tether = PathBuf::from(
        std::env::var_os("TETHER_GUEST_TETHER").ok_or("TETHER_GUEST_TETHER is not set")?,
    );
    let dir = tempfile::Builder::new()
        .prefix("tether-cgroup2-")
        .tempdir_in("/var/tmp")
        .map_err(|e| e.to_string())?;
    let rootfs = tether_tests::fixture::BundleSpec::shell("true")
        .create(dir.path().join("probe"))
        .map_err(|e| e.to_string())?
        .rootfs();
    let mut tally = Tally {
        passed: 0,
        failed: Vec::new(),
    };
    for runtime in ["runc", "crun"] {
        let door = Door {
            tether: tether.clone(),
            state: dir.path().join(format!("state-{runtime}")),
            runtime,
            rootfs: rootfs.clone(),
        };
        let case = |name: &str| format!("tether [{runtime}] {name}");
        tally.case(&case("limits_reach_the_v2_files"), || door.limits());
        tally.case(&case("stats_equal_the_v2_files"), || door.stats());
        tally.case(&case("exec_runs_in_the_containers_cgroup"), || door.exec());
        tally.case(&case("pause_and_resume_use_the_v2_freezer"), || {
            door.pause_resume()
        });
        tally.case(&case("oom_kill_is_reported_before_the_exit"), || door.oom());
        tally.case(&case("rm_leaves_no_cgroup"), || door.rm_leaves_nothing());
    }
    engines(&tether, dir.path(), &rootfs, &mut tally)?;
    if tally.failed.is_empty() {
        println!("e2e cgroup2: {} passed", tally.passed);
        Ok(())
    } else {
        Err(format!(
            "e2e cgroup2: {} failed:\n  {}",
            tally.failed.len(),
            tally.failed.join("\n  ")
        ))
    }
}

/// The v2 directory of process `pid`'s cgroup.
fn cgroup_of(pid: i32) -> Result<PathBuf, String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .map_err(|e| format!("/proc/{pid}/cgroup: {e}"))?;
    let path = text
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .ok_or_else(|| format!("pid {pid} has no v2 cgroup: {text:?}"))?;
    Ok(Path::new("/sys/fs/cgroup").join(path.trim_start_matches('/')))
}

/// A cgroup file's contents, trimmed.
fn file(dir: &Path, name: &str) -> Result<String, String> {
    std::fs::read_to_string(dir.join(name))
        .map(|t| t.trim().to_owned())
        .map_err(|e| format!("{}: {e}", dir.join(name).display()))
}

/// `key value` lines of a cgroup file.
fn keyed(dir: &Path, name: &str) -> Result<Vec<(String, u64)>, String> {
    Ok(file(dir, name)?
        .lines()
        .filter_map(|l| {
            let (key, value) = l.split_once(' ')?;
            Some((key.to_owned(), value.trim().parse().ok()?))
        })
        .collect())
}

/// A limit file as containerd's cgroups library reads it: `max` is unlimited.
fn limit_of(text: &str) -> u64 {
    if text == "max" {
        u64::MAX
    } else {
        text.parse().unwrap_or(0)
    }
}

/// tether's own door in the guest, with one runtime.
struct Door {
    tether: PathBuf,
    state: PathBuf,
    runtime: &'static str,
    rootfs: PathBuf,
}

impl Door {
    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.tether);
        cmd.arg("--state-dir").arg(&self.state).stdin(Stdio::null());
        cmd
    }

    fn tether(&self, args: &[&str]) -> Result<String, String> {
        let out = self
            .command()
            .args(args)
            .output()
            .map_err(|e| format!("tether: {e}"))?;
        if out.status.success() {
            Ok(text(&out.stdout))
        } else {
            Err(format!(
                "tether {}: {} ({})",
                args.join(" "),
                text(&out.stderr).trim(),
                out.status
            ))
        }
    }

    /// `tether run -d` with `flags`, then `command`; returns the init's pid.
    fn run(&self, id: &str, flags: &[&str], command: &[&str]) -> Result<i32, String> {
        let rootfs = self.rootfs.to_string_lossy();
        let mut args = vec!["run", "-d", "--runtime", self.runtime, "--rootfs", &rootfs];
        args.extend(flags);
        args.push(id);
        args.push("--");
        args.extend(command);
        self.tether(&args)?;
        self.pid(id)
    }

    /// `tether wait`: the container's exit code (tether's own exit code too).
    fn wait(&self, id: &str) -> Result<i32, String> {
        let out = self
            .command()
            .args(["wait", id])
            .output()
            .map_err(|e| format!("tether wait: {e}"))?;
        text(&out.stdout).trim().parse().map_err(|_| {
            format!(
                "tether wait {id}: {} ({})",
                text(&out.stderr).trim(),
                out.status
            )
        })
    }

    fn state(&self, id: &str) -> Result<serde_json::Value, String> {
        let state = self.tether(&["state", id])?;
        serde_json::from_str(&state).map_err(|e| format!("state {state:?}: {e}"))
    }

    fn pid(&self, id: &str) -> Result<i32, String> {
        self.state(id)?["pid"]
            .as_i64()
            .map(|p| p as i32)
            .ok_or_else(|| format!("{id}: no pid in its state"))
    }

    /// `--memory`, `--pids-limit` and `--cpus` reach `memory.max`, `pids.max` and `cpu.max`.
    fn limits(&self) -> Check {
        let id = "limits";
        let pid = self.run(
            id,
            &["--memory", "64m", "--pids-limit", "20", "--cpus", "0.5"],
            &["sleep", "1000"],
        )?;
        let dir = cgroup_of(pid)?;
        let found = (
            file(&dir, "memory.max")?,
            file(&dir, "pids.max")?,
            file(&dir, "cpu.max")?,
        );
        self.tether(&["rm", "-f", id])?;
        expect(
            found == ("67108864".into(), "20".into(), "50000 100000".into()),
            || {
                format!(
                    "{} has memory.max, pids.max, cpu.max {found:?}",
                    dir.display()
                )
            },
        )
    }

    /// `tether stats` gives the figures of the v2 files: tasks, memory (less the inactive file
    /// cache, as docker counts it) against `memory.max`.
    fn stats(&self) -> Check {
        let id = "stats";
        let pid = self.run(id, &["--memory", "32m"], &["sleep", "1000"])?;
        let dir = cgroup_of(pid)?;
        let shown = self.tether(&["stats", "--no-stream", "--format", "json", id]);
        let memory: u64 = file(&dir, "memory.current")?.parse().unwrap_or(0);
        let inactive = keyed(&dir, "memory.stat")?
            .into_iter()
            .find(|(k, _)| k == "inactive_file")
            .map_or(0, |(_, v)| v);
        let pids = file(&dir, "pids.current")?;
        self.tether(&["rm", "-f", id])?;
        let shown: serde_json::Value =
            serde_json::from_str(&shown?).map_err(|e| format!("stats: {e}"))?;
        let row = &shown[0];
        expect(
            row["pids"].as_u64().map(|p| p.to_string()) == Some(pids.clone())
                && row["memory_limit_bytes"].as_u64() == Some(32 << 20)
                && row["memory_bytes"].as_u64() == Some(memory.saturating_sub(inactive)),
            || {
                format!(
                    "stats {row}; files: pids.current {pids}, memory.current {memory}, inactive_file {inactive}"
                )
            },
        )
    }

    /// An exec's process joins the container's cgroup.
    fn exec(&self) -> Check {
        let id = "exec";
        let pid = self.run(id, &[], &["sleep", "1000"])?;
        let dir = cgroup_of(pid)?;
        let mut exec = self
            .command()
            .args(["exec", id, "--", "sleep", "1000"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("tether exec: {e}"))?;
        let mut procs = String::new();
        let joined = wait_until(Duration::from_secs(30), || {
            procs = file(&dir, "cgroup.procs")?;
            Ok(procs.lines().count() == 2)
        });
        self.tether(&["rm", "-f", id])?;
        let _ = exec.wait();
        joined.map_err(|e| format!("cgroup.procs is {procs:?}: {e}"))
    }

    /// `pause` freezes the cgroup (`cgroup.freeze`, `frozen 1` in `cgroup.events`); `resume`
    /// thaws it.
    fn pause_resume(&self) -> Check {
        let id = "freeze";
        let pid = self.run(id, &[], &["sleep", "1000"])?;
        let dir = cgroup_of(pid)?;
        let frozen = |want: &str| -> Check {
            let events = file(&dir, "cgroup.events")?;
            expect(
                events.lines().any(|l| l == format!("frozen {want}")),
                || format!("cgroup.events {events:?}, want frozen {want}"),
            )
        };
        let checked = (|| {
            self.tether(&["pause", id])?;
            frozen("1")?;
            expect(self.state(id)?["status"] == "paused", || {
                "not paused".into()
            })?;
            self.tether(&["resume", id])?;
            frozen("0")?;
            expect(self.state(id)?["status"] == "running", || {
                "not running".into()
            })
        })();
        self.tether(&["rm", "-f", id])?;
        checked
    }

    /// An OOM kill under `--memory 16m`: exit 137, `oom_killed` in the state, and `oom` before
    /// `exit` in `tether events`.
    fn oom(&self) -> Check {
        let id = "oom";
        std::fs::create_dir_all(&self.state).map_err(|e| e.to_string())?;
        let mut events = self
            .command()
            .arg("events")
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("tether events: {e}"))?;
        // `tether events` tells what changes after it watches: wait for its inotify watch.
        let watching = wait_until(Duration::from_secs(15), || {
            Ok(tether_tests::harness::inotify_watches(events.id()) > 0)
        });
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let reader = {
            let lines = lines.clone();
            let stdout = events.stdout.take().expect("piped");
            std::thread::spawn(move || {
                use std::io::BufRead;
                for line in std::io::BufReader::new(stdout)
                    .lines()
                    .map_while(Result::ok)
                {
                    lines.lock().expect("lines").push(line);
                }
            })
        };
        let result = (|| {
            watching.map_err(|e| format!("tether events set no watch: {e}"))?;
            self.run(
                id,
                &["--memory", "16m"],
                &[
                    "sh",
                    "-c",
                    "head -c 268435456 /dev/zero | tail -n 1 >/dev/null",
                ],
            )?;
            let code = self.wait(id)?;
            expect(code == 137, || format!("exit code {code}, want 137"))?;
            let state = self.state(id)?;
            expect(state["oom_killed"] == true, || format!("state {state}"))?;
            let mut kinds = Vec::new();
            wait_until(Duration::from_secs(15), || {
                kinds = lines
                    .lock()
                    .expect("lines")
                    .iter()
                    .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                    .filter(|e| e["id"] == id)
                    .filter_map(|e| e["type"].as_str().map(str::to_owned))
                    .collect::<Vec<_>>();
                Ok(kinds.iter().any(|k| k == "exit"))
            })
            .map_err(|e| format!("no exit event ({kinds:?}): {e}"))?;
            let oom_at = kinds.iter().position(|k| k == "oom");
            let exit_at = kinds.iter().position(|k| k == "exit");
            expect(
                matches!((oom_at, exit_at), (Some(o), Some(e)) if o < e),
                || format!("events {kinds:?}: want oom before exit"),
            )
        })();
        let _ = events.kill();
        let _ = events.wait();
        let _ = reader.join();
        let _ = self.tether(&["rm", "-f", id]);
        result
    }

    /// No cgroup is left once a container is removed: exited then `rm`, or running and `rm -f`.
    fn rm_leaves_nothing(&self) -> Check {
        let exited = "exited";
        let dir = cgroup_of(self.run(exited, &[], &["sleep", "1000"])?)?;
        self.tether(&["kill", exited])?;
        self.wait(exited)?;
        self.tether(&["rm", exited])?;
        expect(!dir.exists(), || format!("{} left after rm", dir.display()))?;
        let running = "running";
        let dir = cgroup_of(self.run(running, &[], &["sleep", "1000"])?)?;
        self.tether(&["rm", "-f", running])?;
        expect(!dir.exists(), || {
            format!("{} left after rm -f", dir.display())
        })?;
        let parent = dir.parent().unwrap_or(Path::new("/"));
        let left = std::fs::read_dir(parent)
            .map(|d| d.flatten().filter(|e| e.path().is_dir()).count())
            .unwrap_or(0);
        expect(left == 0, || {
            format!("{left} cgroups left in {}", parent.display())
        })
    }
}

/// The containerd engines the guest runs: the system's 1.6 and the unpacked 2.1.
const GUEST_ENGINES: &[&str] = &["1.6", "2.1"];

/// containerd 1.6 and 2.1 in the guest, with tether's shim and containerd-shim-runc-v2 as the
/// reference: the same checks pass with both, where the reference has the behaviour.
fn engines(tether: &Path, dir: &Path, rootfs: &Path, tally: &mut Tally) -> Check {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).map_err(|e| e.to_string())?;
    std::os::unix::fs::symlink(tether, bin.join("containerd-shim-tether-v2"))
        .map_err(|e| format!("shim link: {e}"))?;
    let system_path = std::env::var("PATH").unwrap_or_default();
    for &engine in GUEST_ENGINES {
        let path = match crate::engines::containerd_bin(engine)? {
            Some(engine_bin) => format!("{}:{system_path}", engine_bin.display()),
            None => system_path.clone(),
        };
        std::env::set_var("PATH", &path);
        let started = PrivateContainerd::start_with_path(
            &dir.join(format!("containerd-{engine}")),
            rootfs,
            Some(&bin),
        );
        let mut containerd = match started {
            Ok(containerd) => containerd,
            Err(e) => {
                tally.failed.push(format!("containerd {engine}: {e}"));
                continue;
            }
        };
        for (shim, runtime) in [("tether", TETHER_RUNTIME), ("runc", RUNC_RUNTIME)] {
            let cases: [(&str, Test); 4] = [
                ("oom_is_published_before_the_exit", oom),
                ("metrics_are_the_v2_files", metrics_v2),
                ("update_reaches_the_v2_files", update_v2),
                ("delete_leaves_no_cgroup", delete_leaves_nothing),
            ];
            for (name, test) in cases {
                let label = format!("containerd {engine} [{shim}] {name}");
                if let Some((_, _, why)) = REFERENCE_GAPS
                    .iter()
                    .find(|(e, case, _)| shim == "runc" && *e == engine && *case == name)
                {
                    println!("e2e cgroup2 {label} ... skipped: {why}");
                    continue;
                }
                let mut ctx = Ctx {
                    containerd: &mut containerd,
                    tether: tether.to_owned(),
                    runtime,
                    shim,
                    dir: dir.to_owned(),
                };
                tally.case(&label, || test(&mut ctx));
                for id in ["oom", "metrics", "update", "deleted"] {
                    let id = ctx.id(id);
                    if ctx.ctr(&["containers", "info", &id]).is_ok() {
                        ctx.remove(&id);
                    }
                }
            }
        }
        containerd.stop();
        std::env::set_var("PATH", &system_path);
    }
    Ok(())
}

/// The pid `ctr task ls` shows for `id`.
fn task_pid(ctx: &Ctx<'_>, id: &str) -> Result<i32, String> {
    let list = ctx.ctr(&["task", "ls"])?;
    list.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|cols| cols.first() == Some(&id))
        .and_then(|cols| cols.get(1)?.parse().ok())
        .ok_or_else(|| format!("{id}: no pid in `ctr task ls`: {list:?}"))
}

/// A running task's v2 cgroup, from its pid.
fn run_sleeper(ctx: &Ctx<'_>, id: &str, flags: &[&str]) -> Result<PathBuf, String> {
    let mut args = vec!["run", "-d", "--runtime", ctx.runtime];
    args.extend(flags);
    args.extend([IMAGE, id, "sleep", "1000"]);
    ctx.ctr(&args)?;
    ctx.wait_status(id, "RUNNING")?;
    cgroup_of(task_pid(ctx, id)?)
}

fn kill_and_delete(ctx: &Ctx<'_>, id: &str) -> Check {
    ctx.ctr(&["task", "kill", "-s", "SIGKILL", id])?;
    ctx.wait_status(id, "STOPPED")?;
    ctx.ctr(&["task", "delete", id])?;
    ctx.ctr(&["containers", "delete", id]).map(drop)
}

/// `ctr task metrics` decodes an `io.containerd.cgroups.v2.Metrics`, each figure equal to the
/// file it comes from (`max` as unlimited, a missing figure as 0, as Go's encoder leaves zeros
/// out). The files are read before and after the call: the kernel's own figures (charged slab,
/// flushed statistics) may move while a container sleeps, so each answer must lie between the
/// two readings, which are equal for whatever held still. io needs a read charged to the
/// container's cgroup first, and its answer equals io.stat.
fn metrics_v2(ctx: &mut Ctx<'_>) -> Check {
    let id = ctx.id("metrics");
    let dir = run_sleeper(ctx, &id, &["--memory-limit", "67108864"])?;
    let read = read_disk_in(&dir);
    // containerd 1.6's v2 Metrics has no max_usage (memory.peak) to decode it into.
    let peak = !containerd_version().starts_with("1.");
    let before = metrics_files(&dir, peak);
    let answer = ctx.ctr(&["task", "metrics", "--format", "json", &id]);
    let after = metrics_files(&dir, peak);
    let io_stat = file(&dir, "io.stat");
    kill_and_delete(ctx, &id)?;
    read?;
    let answer = answer?;
    let json: serde_json::Value =
        serde_json::from_str(&answer).map_err(|e| format!("metrics {answer:?}: {e}"))?;
    let io_stat = io_stat?;
    let io_files = io_of_file(&io_stat);
    let io_answer = io_of_answer(&json["io"]["usage"]);
    expect(io_files.iter().any(|e| e.2 >= DISK_READ), || {
        format!("io.stat counts no {DISK_READ}-byte read: {io_stat:?}")
    })?;
    expect(io_answer == io_files, || {
        format!("io is {io_answer:?}, io.stat says {io_stat:?}")
    })?;
    let (before, after) = (before?, after?);
    let figure = |path: &str| -> u64 {
        path.split('.')
            .fold(&json, |value, key| &value[key])
            .as_u64()
            .unwrap_or(0)
    };
    let differ: Vec<String> = before
        .iter()
        .zip(&after)
        .filter(|((path, first), (_, last))| {
            let shown = figure(path);
            shown < *first.min(last) || shown > *first.max(last)
        })
        .map(|((path, first), (_, last))| {
            format!(
                "{path} is {}, the file says {first} then {last}",
                figure(path)
            )
        })
        .collect();
    expect(differ.is_empty(), || {
        format!("{}; the answer: {answer}", differ.join("; "))
    })
}

/// Bytes read from the guest's disk in a container's cgroup, so that io.stat has a line.
const DISK_READ: u64 = 1 << 20;

/// Reads [`DISK_READ`] bytes of the guest's disk (`/dev/vda`, uncached) from a process put in the
/// cgroup `dir` first, so the reads are charged to it. The disk is opened before, as its stdin:
/// the container's device rules, which bind every process of its cgroup, do not allow it.
fn read_disk_in(dir: &Path) -> Check {
    let disk = std::fs::File::open("/dev/vda").map_err(|e| format!("/dev/vda: {e}"))?;
    let out = Command::new("sh")
        .arg("-c")
        .arg(
            "echo $$ > \"$0/cgroup.procs\" && \
             exec dd of=/dev/null bs=64K count=\"$1\" iflag=direct status=none",
        )
        .arg(dir)
        .arg((DISK_READ / 65536).to_string())
        .stdin(disk)
        .output()
        .map_err(|e| format!("dd: {e}"))?;
    expect(out.status.success(), || {
        format!(
            "dd in {}: {} ({})",
            dir.display(),
            text(&out.stderr).trim(),
            out.status
        )
    })
}

/// (major, minor, rbytes, wbytes, rios, wios) per device, sorted.
type IoFigures = Vec<(u64, u64, u64, u64, u64, u64)>;

/// io.stat's lines as [`IoFigures`].
fn io_of_file(text: &str) -> IoFigures {
    let mut entries: IoFigures = text
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (major, minor) = fields.next()?.split_once(':')?;
            let pairs: Vec<(&str, u64)> = fields
                .filter_map(|f| {
                    let (k, v) = f.split_once('=')?;
                    Some((k, v.parse().ok()?))
                })
                .collect();
            let get = |key: &str| pairs.iter().find(|(k, _)| *k == key).map_or(0, |(_, v)| *v);
            Some((
                major.parse().ok()?,
                minor.parse().ok()?,
                get("rbytes"),
                get("wbytes"),
                get("rios"),
                get("wios"),
            ))
        })
        .collect();
    entries.sort_unstable();
    entries
}

/// The `io.usage` list of a metrics answer as [`IoFigures`] (Go's encoder leaves zeros out).
fn io_of_answer(usage: &serde_json::Value) -> IoFigures {
    let mut entries: IoFigures = usage
        .as_array()
        .map(|list| {
            list.iter()
                .map(|e| {
                    let get = |key: &str| e[key].as_u64().unwrap_or(0);
                    (
                        get("major"),
                        get("minor"),
                        get("rbytes"),
                        get("wbytes"),
                        get("rios"),
                        get("wios"),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    entries.sort_unstable();
    entries
}

/// What the v2 files of `dir` say, under the names of containerd's v2 metrics.
fn metrics_files(dir: &Path, peak: bool) -> Result<Vec<(String, u64)>, String> {
    let mut want: Vec<(String, u64)> = Vec::new();
    let mut single = |name: &str, file_name: &str| -> Check {
        want.push((name.to_owned(), limit_of(&file(dir, file_name)?)));
        Ok(())
    };
    single("pids.current", "pids.current")?;
    single("pids.limit", "pids.max")?;
    single("memory.usage", "memory.current")?;
    single("memory.usage_limit", "memory.max")?;
    single("memory.swap_usage", "memory.swap.current")?;
    single("memory.swap_limit", "memory.swap.max")?;
    if peak && dir.join("memory.peak").exists() {
        single("memory.max_usage", "memory.peak")?;
    }
    for (key, value) in keyed(dir, "cpu.stat")? {
        if [
            "usage_usec",
            "user_usec",
            "system_usec",
            "nr_periods",
            "nr_throttled",
            "throttled_usec",
        ]
        .contains(&key.as_str())
        {
            want.push((format!("cpu.{key}"), value));
        }
    }
    for (key, value) in keyed(dir, "memory.stat")? {
        if [
            "anon",
            "file",
            "inactive_file",
            "active_file",
            "inactive_anon",
            "active_anon",
            "pgfault",
            "pgmajfault",
        ]
        .contains(&key.as_str())
        {
            want.push((format!("memory.{key}"), value));
        }
    }
    for (key, value) in keyed(dir, "memory.events")? {
        if ["low", "high", "max", "oom", "oom_kill"].contains(&key.as_str()) {
            want.push((format!("memory_events.{key}"), value));
        }
    }
    Ok(want)
}

/// The version of the `containerd` first on PATH (`1.6.20`).
fn containerd_version() -> String {
    Command::new("containerd")
        .arg("--version")
        .output()
        .map(|o| text(&o.stdout))
        .unwrap_or_default()
        .split_whitespace()
        .nth(2)
        .unwrap_or_default()
        .trim_start_matches('v')
        .to_owned()
}

/// An Update with new memory and pids limits reaches `memory.max` and `pids.max`. ctr has no
/// command for it, so it goes to the shim as containerd sends it: the shim's ttrpc address from
/// the task's bundle, the resources as JSON.
fn update_v2(ctx: &mut Ctx<'_>) -> Check {
    use containerd_shim_protos::api::UpdateTaskRequest;
    use containerd_shim_protos::protobuf::well_known_types::any::Any;
    let id = ctx.id("update");
    let dir = run_sleeper(ctx, &id, &["--memory-limit", "67108864"])?;
    let bundle = ctx.task_bundle(&id);
    let updated = shim_address(&bundle).and_then(|(address, version)| {
        use containerd_shim_protos::protobuf::Message;
        let client = containerd_shim_protos::ttrpc::Client::connect(&address)
            .map_err(|e| format!("connect to the shim at {address}: {e}"))?;
        let update = UpdateTaskRequest {
            id: id.clone(),
            resources: Some(Any {
                type_url: "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources".into(),
                value: br#"{"memory":{"limit":50331648},"pids":{"limit":42}}"#.to_vec(),
                ..Default::default()
            })
            .into(),
            ..Default::default()
        };
        // The task service's messages are the same in v2 and v3; only its name differs.
        let request = containerd_shim_protos::ttrpc::Request {
            service: format!("containerd.task.v{version}.Task"),
            method: "Update".into(),
            payload: update
                .write_to_bytes()
                .map_err(|e| format!("encode Update: {e}"))?,
            timeout_nano: 10_000_000_000,
            ..Default::default()
        };
        client
            .request(request)
            .map(drop)
            .map_err(|e| format!("Update (task API v{version}): {e}"))
    });
    let found = (file(&dir, "memory.max"), file(&dir, "pids.max"));
    kill_and_delete(ctx, &id)?;
    updated?;
    let found = (found.0?, found.1?);
    expect(found == ("50331648".into(), "42".into()), || {
        format!("memory.max, pids.max are {found:?}, want 50331648, 42")
    })
}

/// The shim's ttrpc address and task API version, from its bundle: an `address` file
/// (containerd 1.x, API 2) or `bootstrap.json` (2.x, which says the version).
fn shim_address(bundle: &Path) -> Result<(String, u64), String> {
    if let Ok(address) = std::fs::read_to_string(bundle.join("address")) {
        return Ok((address.trim().to_owned(), 2));
    }
    let path = bundle.join("bootstrap.json");
    let text = std::fs::read_to_string(&path).map_err(|e| {
        format!(
            "{}: neither address nor bootstrap.json ({e})",
            bundle.display()
        )
    })?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let version = json["version"].as_u64().unwrap_or(2);
    json["address"]
        .as_str()
        .map(|address| (address.to_owned(), version))
        .ok_or_else(|| format!("{}: no address in {text:?}", path.display()))
}

/// Once a task and its container are deleted, no cgroup and no shim are left.
fn delete_leaves_nothing(ctx: &mut Ctx<'_>) -> Check {
    let id = ctx.id("deleted");
    let dir = run_sleeper(ctx, &id, &[])?;
    kill_and_delete(ctx, &id)?;
    expect(!dir.exists(), || {
        format!("{} left after delete", dir.display())
    })?;
    wait_until(Duration::from_secs(15), || {
        Ok(super::support::shim_pid(&id).is_none())
    })
    .map_err(|e| format!("the shim of {id} is still there: {e}"))
}
