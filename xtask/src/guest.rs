//! A throwaway Linux guest whose cgroups are the cgroup v2 unified hierarchy alone: where tether's
//! v2 paths (OOM from `memory.events`, metrics from the v2 files, the v2 freezer) run for real
//! on a machine whose own cgroups are v1.
//!
//! - The kernel is Debian's own (`linux-image-amd64`'s dependency), fetched with `apt-get
//!   download` and unpacked with `dpkg-deb -x` into `target/cgroup2/`; nothing is installed. Its
//!   xz payload is unpacked to the ELF `vmlinux`, which qemu boots through its PVH entry (the
//!   firmware and the decompressor are slow under TCG).
//! - The initramfs is the host's static busybox, the modules 9p and overlayfs need, and an
//!   `/init` that moves into a tmpfs (runc's pivot_root refuses the initramfs root), mounts
//!   cgroup2 at `/sys/fs/cgroup` with every controller enabled for children, the host's `/usr`
//!   read-only and the shared directory read-write (at its host path) over 9p, runs the command
//!   and powers off. The kernel runs with `cgroup_no_v1=all`: no v1 hierarchy can be mounted.
//! - qemu runs under TCG (software emulation): this machine's `/dev/kvm` does not boot a stock
//!   kernel. The command's output is streamed as it comes; its exit code comes back in a file.
//!
//! ```text
//! let guest = guest::prepare()?;
//! let outcome = guest::run(&guest, &workspace, "target/debug/xtask e2e cgroup2 --inside", timeout)?;
//! ```

use crate::util::run_status;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The modules the guest loads, in dependency order (all modules in Debian's kernel).
const MODULES: &[&str] = &[
    "virtio_ring",
    "virtio",
    "virtio_pci_legacy_dev",
    "virtio_pci_modern_dev",
    "virtio_pci",
    "9pnet",
    "9pnet_virtio",
    "netfs",
    "fscache",
    "9p",
    "overlay",
    // A small disk, so that block I/O is counted in io.stat.
    "virtio_blk",
];
/// Bumped when the initramfs changes, so a cached one is rebuilt.
const INITRD_VERSION: u32 = 2;
const MEMORY_MIB: u32 = 1536;
const DISK_BYTES: u64 = 16 << 20;
const CPUS: u32 = 2;
/// xz's stream header: where the kernel's compressed payload starts.
const XZ_MAGIC: &[u8] = b"\xfd7zXZ\x00";

/// A kernel and initramfs ready to boot.
pub struct Guest {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    /// The kernel's release (`6.1.0-57-amd64`).
    pub release: String,
}

/// How a command in the guest went.
pub struct Outcome {
    /// The command's exit code.
    pub code: i32,
    /// From qemu's start to the command's.
    pub boot: Option<Duration>,
    pub total: Duration,
}

/// Why a guest cannot run here, if it cannot.
pub fn unavailable() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("needs root".into());
    }
    for (binary, package) in [
        ("qemu-system-x86_64", "qemu-system-x86"),
        ("xz", "xz-utils"),
        ("dpkg-deb", "dpkg"),
    ] {
        if !crate::util::on_path(binary) {
            return Some(format!(
                "{binary} is not installed ({package}; cargo xtask deps)"
            ));
        }
    }
    if !Path::new("/bin/busybox").is_file() {
        return Some("/bin/busybox is not installed (busybox-static; cargo xtask deps)".into());
    }
    None
}

/// Where the kernel, the initramfs and the suite's own program are kept between runs.
pub fn cache_dir() -> PathBuf {
    crate::util::target_dir().join("cgroup2")
}

/// The kernel and initramfs, fetched and built once (kept in `target/cgroup2/`).
pub fn prepare() -> Result<Guest, String> {
    let dir = cache_dir();
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let release_file = dir.join("release");
    let release = std::fs::read_to_string(&release_file)
        .map(|r| r.trim().to_owned())
        .unwrap_or_default();
    let kernel = dir.join(format!("vmlinux-{release}"));
    let initrd = dir.join(format!("initrd-{release}-v{INITRD_VERSION}.cpio.gz"));
    if !release.is_empty() && kernel.is_file() && initrd.is_file() {
        return Ok(Guest {
            kernel,
            initrd,
            release,
        });
    }
    let unpacked = dir.join("kernel-package");
    let _ = std::fs::remove_dir_all(&unpacked);
    let release = fetch_kernel(&unpacked)?;
    let kernel = dir.join(format!("vmlinux-{release}"));
    let initrd = dir.join(format!("initrd-{release}-v{INITRD_VERSION}.cpio.gz"));
    extract_vmlinux(&unpacked.join(format!("boot/vmlinuz-{release}")), &kernel)?;
    build_initrd(&unpacked.join(format!("lib/modules/{release}")), &initrd)?;
    let _ = std::fs::remove_dir_all(&unpacked);
    std::fs::write(&release_file, format!("{release}\n")).map_err(|e| e.to_string())?;
    Ok(Guest {
        kernel,
        initrd,
        release,
    })
}

/// Downloads the kernel package `linux-image-amd64` depends on in this machine's Debian release
/// and unpacks it into `into`; returns the kernel's release.
fn fetch_kernel(into: &Path) -> Result<String, String> {
    let os = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    let codename = os
        .lines()
        .find_map(|l| l.strip_prefix("VERSION_CODENAME="))
        .map(|c| c.trim_matches('"').to_owned())
        .filter(|c| !c.is_empty())
        .ok_or("cgroup2: no VERSION_CODENAME in /etc/os-release")?;
    println!("cgroup2: fetching Debian {codename}'s kernel (once)");
    let apt = crate::engines::PrivateApt::new(&[&codename])?;
    let depends = apt
        .command("apt-cache")
        .args(["depends", "linux-image-amd64"])
        .output()
        .map_err(|e| format!("apt-cache: {e}"))?;
    let package = String::from_utf8_lossy(&depends.stdout)
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("Depends: ")
                .filter(|p| p.starts_with("linux-image-") && p.as_bytes()[12].is_ascii_digit())
                .map(str::to_owned)
        })
        .ok_or("cgroup2: linux-image-amd64 names no kernel package")?;
    let deb = apt.download(&package, &package)?;
    run_status(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(into))?;
    let _ = std::fs::remove_file(&deb);
    Ok(package.trim_start_matches("linux-image-").to_owned())
}

/// The ELF kernel inside a bzImage: its xz payload, unpacked.
fn extract_vmlinux(bzimage: &Path, into: &Path) -> Result<(), String> {
    let image = std::fs::read(bzimage).map_err(|e| format!("{}: {e}", bzimage.display()))?;
    let start = image
        .windows(XZ_MAGIC.len())
        .position(|w| w == XZ_MAGIC)
        .ok_or_else(|| format!("{}: no xz payload", bzimage.display()))?;
    let partial = into.with_extension("partial");
    let out = std::fs::File::create(&partial).map_err(|e| e.to_string())?;
    let mut xz = Command::new("xz")
        .args(["-dc", "--single-stream"])
        .stdin(Stdio::piped())
        .stdout(out)
        .spawn()
        .map_err(|e| format!("xz: {e}"))?;
    let mut stdin = xz.stdin.take().expect("piped");
    // xz stops reading after its one stream: what follows the payload is not needed.
    let _ = stdin.write_all(&image[start..]);
    drop(stdin);
    xz.wait().map_err(|e| format!("xz: {e}"))?;
    let mut magic = [0u8; 4];
    std::fs::File::open(&partial)
        .and_then(|mut f| f.read_exact(&mut magic))
        .map_err(|e| format!("vmlinux: {e}"))?;
    if &magic != b"\x7fELF" {
        return Err(format!(
            "{}: the payload is no ELF kernel",
            bzimage.display()
        ));
    }
    std::fs::rename(&partial, into).map_err(|e| e.to_string())
}

/// The guest's `/init` (busybox sh).
const INIT: &str = r#"#!/.guest/busybox sh
# Stage 1 runs from the initramfs, which pivot_root (runc's) refuses: copy it all into a tmpfs and
# switch_root there. Stage 2 sets the guest up, runs the command and powers off.
/.guest/busybox mkdir -p /.guest/bin
/.guest/busybox --install -s /.guest/bin
export PATH=/.guest/bin
if [ ! -e /.guest/moved ]; then
    mount -t tmpfs -o mode=0755 root /mnt
    for entry in $(ls -A / | grep -vxE 'mnt|proc|sys|dev'); do cp -a "/$entry" /mnt/; done
    mkdir -p /mnt/proc /mnt/sys /mnt/dev /mnt/mnt
    touch /mnt/.guest/moved
    exec switch_root /mnt /init
fi
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts -o newinstance,ptmxmode=0666 devpts /dev/pts
ln -sf pts/ptmx /dev/ptmx
ln -sf /proc/self/fd /dev/fd
mount -t tmpfs -o mode=1777 shm /dev/shm
mount -t tmpfs -o mode=0755 run /run
mount -t tmpfs -o mode=1777 tmp /tmp
mount -t cgroup2 -o nsdelegate cgroup2 /sys/fs/cgroup
for controller in $(cat /sys/fs/cgroup/cgroup.controllers); do
    echo "+$controller" > /sys/fs/cgroup/cgroup.subtree_control || echo "guest: no $controller for children"
done
ip link set lo up
for module in $(cat /.guest/modules); do insmod "/.guest/modules.d/$module.ko" || echo "guest: insmod $module failed"; done
options=trans=virtio,version=9p2000.L,msize=524288
mount -t 9p -o "$options,ro,cache=loose" usr /usr || echo "guest: no /usr"
mkdir -p /.guest/ctl
mount -t 9p -o "$options" ctl /.guest/ctl || poweroff -f
. /.guest/ctl/env
mkdir -p "$GUEST_SHARE"
mount -t 9p -o "$options,cache=none" share "$GUEST_SHARE" || echo "guest: no share"
: > /.guest/ctl/started
cd "$GUEST_SHARE"
HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    /usr/bin/bash /.guest/ctl/command > /.guest/ctl/out 2>&1 < /dev/null
echo $? > /.guest/ctl/code
sync
umount "$GUEST_SHARE" /.guest/ctl 2>/dev/null
poweroff -f
"#;

/// Builds the initramfs: busybox, the modules, a minimal /etc, `/init`.
fn build_initrd(modules: &Path, into: &Path) -> Result<(), String> {
    let root = tempfile::Builder::new()
        .prefix("initrd-")
        .tempdir_in(cache_dir())
        .map_err(|e| e.to_string())?;
    let r = root.path();
    let io =
        |what: &str, result: std::io::Result<()>| result.map_err(|e| format!("initrd {what}: {e}"));
    for dir in [
        ".guest/modules.d",
        "proc",
        "sys",
        "dev",
        "run",
        "tmp",
        "usr",
        "etc",
        "root",
        "mnt",
        "var/tmp",
        "var/lib",
    ] {
        io(dir, std::fs::create_dir_all(r.join(dir)))?;
    }
    // Merged /usr, as the host has it: /bin and the rest come with the host's /usr.
    for link in ["bin", "sbin", "lib", "lib64"] {
        io(
            link,
            std::os::unix::fs::symlink(format!("usr/{link}"), r.join(link)),
        )?;
    }
    io(
        "busybox",
        std::fs::copy("/bin/busybox", r.join(".guest/busybox")).map(drop),
    )?;
    for module in MODULES {
        let found = find_file(&modules.join("kernel"), &format!("{module}.ko"))
            .ok_or_else(|| format!("initrd: module {module} not in {}", modules.display()))?;
        io(
            module,
            std::fs::copy(found, r.join(format!(".guest/modules.d/{module}.ko"))).map(drop),
        )?;
    }
    io(
        "modules",
        std::fs::write(r.join(".guest/modules"), MODULES.join("\n") + "\n"),
    )?;
    let files: &[(&str, &str)] = &[
        ("etc/passwd", "root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"),
        ("etc/group", "root:x:0:\nnogroup:x:65534:\n"),
        ("etc/hosts", "127.0.0.1 localhost\n"),
        ("etc/hostname", "cgroup2\n"),
        ("etc/nsswitch.conf", "passwd: files\ngroup: files\nhosts: files\n"),
        ("init", INIT),
    ];
    for (path, text) in files {
        io(path, std::fs::write(r.join(path), text))?;
    }
    use std::os::unix::fs::PermissionsExt;
    io(
        "init",
        std::fs::set_permissions(r.join("init"), std::fs::Permissions::from_mode(0o755)),
    )?;
    // Programs from the host's /usr find their libraries through its cache.
    let _ = std::fs::copy("/etc/ld.so.cache", r.join("etc/ld.so.cache"));
    let partial = into.with_extension("partial");
    run_status(
        Command::new("sh")
            .arg("-c")
            .arg("find . | /bin/busybox cpio -o -H newc 2>/dev/null | gzip -1 > \"$0\"")
            .arg(&partial)
            .current_dir(r),
    )?;
    std::fs::rename(&partial, into).map_err(|e| e.to_string())
}

fn find_file(dir: &Path, name: &str) -> Option<PathBuf> {
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if let Some(found) = find_file(&path, name) {
                return Some(found);
            }
        } else if entry.file_name() == name {
            return Some(path);
        }
    }
    None
}

/// Boots the guest, runs `command` (bash) in `share` (shared read-write at the same path) with
/// `env` set, streams its output, and returns how it went. qemu is killed after `timeout`, and
/// on every way out.
pub fn run(
    guest: &Guest,
    share: &Path,
    command: &str,
    env: &[(&str, String)],
    timeout: Duration,
) -> Result<Outcome, String> {
    let ctl = tempfile::Builder::new()
        .prefix("tether-guest-")
        .tempdir()
        .map_err(|e| e.to_string())?;
    let ctl_dir = ctl.path();
    let mut script = String::new();
    for (key, value) in env {
        script.push_str(&format!("export {key}={}\n", shell_quote(value)));
    }
    script.push_str(command);
    script.push('\n');
    std::fs::write(ctl_dir.join("command"), script).map_err(|e| e.to_string())?;
    std::fs::write(
        ctl_dir.join("env"),
        format!("GUEST_SHARE={}\n", shell_quote(&share.to_string_lossy())),
    )
    .map_err(|e| e.to_string())?;
    let console = ctl_dir.join("console");
    // The guest's one block device, /dev/vda: sparse, its contents never matter.
    let disk = ctl_dir.join("disk.img");
    std::fs::File::create(&disk)
        .and_then(|f| f.set_len(DISK_BYTES))
        .map_err(|e| format!("{}: {e}", disk.display()))?;
    let virtfs = |path: &Path, tag: &str, read_only: bool| {
        format!(
            "local,path={},mount_tag={tag},security_model=none,multidevs=remap{}",
            path.display(),
            if read_only { ",readonly=on" } else { "" }
        )
    };
    let started = Instant::now();
    let mut qemu = Command::new("qemu-system-x86_64")
        .args(["-nodefaults", "-no-user-config", "-nographic", "-no-reboot"])
        .args(["-accel", "tcg,thread=multi,tb-size=512", "-cpu", "max"])
        .args(["-smp", &CPUS.to_string(), "-m", &MEMORY_MIB.to_string()])
        .arg("-kernel")
        .arg(&guest.kernel)
        .arg("-initrd")
        .arg(&guest.initrd)
        .args([
            "-append",
            "console=ttyS0 quiet loglevel=4 panic=-1 rdinit=/init cgroup_no_v1=all mitigations=off random.trust_cpu=on i8042.noaux i8042.nokbd",
        ])
        .arg("-serial")
        .arg(format!("file:{}", console.display()))
        .args(["-monitor", "none"])
        .arg("-virtfs")
        .arg(virtfs(Path::new("/usr"), "usr", true))
        .arg("-virtfs")
        .arg(virtfs(ctl_dir, "ctl", false))
        .arg("-virtfs")
        .arg(virtfs(share, "share", false))
        .arg("-drive")
        .arg(format!(
            "file={},if=virtio,format=raw,cache=unsafe",
            disk.display()
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("qemu: {e}"))?;
    let guard = KillOnDrop(qemu.id() as i32);
    let out_path = ctl_dir.join("out");
    let mut shown = 0u64;
    let mut boot = None;
    let deadline = started + timeout;
    let mut stdout = std::io::stdout();
    let status = loop {
        if boot.is_none() && ctl_dir.join("started").exists() {
            boot = Some(started.elapsed());
        }
        shown += stream_new(&out_path, shown, &mut stdout);
        if let Some(status) = qemu.try_wait().map_err(|e| e.to_string())? {
            break Some(status);
        }
        if Instant::now() >= deadline {
            println!("cgroup2: the guest ran past {}s; killed", timeout.as_secs());
            break None;
        }
        crate::bench::check_interrupt()?;
        std::thread::sleep(Duration::from_millis(200));
    };
    drop(guard);
    let _ = qemu.wait();
    stream_new(&out_path, shown, &mut stdout);
    let code = std::fs::read_to_string(ctl_dir.join("code"))
        .ok()
        .and_then(|c| c.trim().parse().ok());
    let Some(code) = code else {
        let mut qemu_said = String::new();
        if let Some(mut err) = qemu.stderr.take() {
            let _ = err.read_to_string(&mut qemu_said);
        }
        let console = std::fs::read_to_string(&console).unwrap_or_default();
        let tail: Vec<&str> = console.lines().rev().take(20).collect();
        return Err(format!(
            "cgroup2: the guest reported no exit code (qemu {status:?}: {}); its console ends:\n{}",
            qemu_said.trim(),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        ));
    };
    Ok(Outcome {
        code,
        boot,
        total: started.elapsed(),
    })
}

/// Copies what `path` gained past `from` to `out`; returns how many bytes.
fn stream_new(path: &Path, from: u64, out: &mut impl Write) -> u64 {
    use std::io::{Seek, SeekFrom};
    let Ok(mut file) = std::fs::File::open(path) else {
        return 0;
    };
    if file.seek(SeekFrom::Start(from)).is_err() {
        return 0;
    }
    let mut new = Vec::new();
    let _ = file.read_to_end(&mut new);
    let _ = out.write_all(&new);
    let _ = out.flush();
    new.len() as u64
}

/// `text` as one word of a POSIX shell.
pub fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}

/// Kills qemu when dropped: no way out leaves a guest running.
struct KillOnDrop(i32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}
