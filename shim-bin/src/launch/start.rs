//! The short-lived commands containerd runs: `start` (start the shim daemon, or find the one that
//! serves the container, and print its address) and `delete` (clean up after a shim that is gone).

use super::args::ShimArgs;
use crate::shim::mounts::unmount_rootfs;
use crate::shim::runtime::RuntimeOptions;
use containerd_shim_protos::api::DeleteResponse;
use containerd_shim_protos::protobuf::Message;
use shim_runc::{DeleteOptions, DirectWait};
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::SystemTime;

/// Shim sockets live here: short paths (a socket path has 108 bytes), private to root.
pub const SOCKET_DIR: &str = "/run/tether/s";
/// The fd the daemon finds its listening socket on.
pub const LISTENER_FD: i32 = 3;

/// The daemon's socket: one per containerd, namespace and container.
pub fn socket_path(args: &ShimArgs) -> PathBuf {
    Path::new(SOCKET_DIR).join(socket_stem(args))
}

/// A stable short name for the container's shim (FNV-1a of what identifies it).
pub fn socket_stem(args: &ShimArgs) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in [&args.address, "\0", &args.namespace, "\0", &args.id]
        .iter()
        .flat_map(|s| s.bytes())
    {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

/// `start`: returns the address to print.
pub fn start(args: &ShimArgs) -> Result<String, String> {
    let bundle = args.bundle_dir()?;
    let socket = socket_path(args);
    let address = format!("unix://{}", socket.display());
    // A daemon serves this container already (containerd retried, or restarted): hand it back.
    if UnixStream::connect(&socket).is_ok() {
        write_address(&bundle, &address)?;
        return Ok(address);
    }
    let options = crate::front::ttrpc::options::from_start_input(&read_options()?)?;
    options
        .save(&bundle)
        .map_err(|e| format!("write runtime options in {}: {e}", bundle.display()))?;
    private_socket_dir()?;
    // Whatever the umask containerd has: only the owner may connect (the door checks the peer too).
    let listener = crate::front::admission::bind_owner_only(&socket)
        .map_err(|e| format!("socket {}: {e}", socket.display()))?;
    let daemon = spawn_daemon(args, &bundle, &listener).map_err(|e| {
        let _ = std::fs::remove_file(&socket);
        format!("start the shim daemon: {e}")
    })?;
    let _ = std::fs::write(bundle.join("shim.pid"), daemon.to_string());
    write_address(&bundle, &address)?;
    Ok(address)
}

/// Makes [`SOCKET_DIR`] (mode 0700 whatever the umask), or checks the one there is the shim's
/// own, and makes it 0700 again.
fn private_socket_dir() -> Result<(), String> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    let dir = Path::new(SOCKET_DIR);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("{SOCKET_DIR}: {e}"))?;
    let meta = std::fs::symlink_metadata(dir).map_err(|e| format!("{SOCKET_DIR}: {e}"))?;
    let uid = nix::unistd::geteuid().as_raw();
    if !meta.is_dir() || meta.uid() != uid {
        return Err(format!(
            "{SOCKET_DIR}: not a directory of uid {uid} (owner {}): refusing to put the shim's socket there",
            meta.uid()
        ));
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| format!("{SOCKET_DIR}: {e}"))
}

/// The runtime options containerd passes on stdin (nothing when run by hand at a terminal).
fn read_options() -> Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    if nix::unistd::isatty(0).unwrap_or(true) {
        return Ok(bytes);
    }
    std::io::stdin()
        .take(1 << 20)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("runtime options on stdin: {e}"))?;
    Ok(bytes)
}

fn write_address(bundle: &Path, address: &str) -> Result<(), String> {
    let path = bundle.join("address");
    std::fs::write(&path, address).map_err(|e| format!("write {}: {e}", path.display()))
}

/// Starts `serve` in a new session, with the listening socket on fd 3 and stdio on /dev/null (the
/// pipe containerd reads `start`'s output from must not be held open).
fn spawn_daemon(args: &ShimArgs, bundle: &Path, listener: &UnixListener) -> std::io::Result<u32> {
    let mut command = Command::new(std::env::current_exe()?);
    // current_exe is the link's target: name the program so it knows it is the shim.
    command
        .arg0("containerd-shim-tether-v2")
        .args(["-namespace", &args.namespace, "-id", &args.id])
        .args(["-address", &args.address])
        .args(["-publish-binary", &args.publish_binary]);
    if args.debug {
        command.arg("-debug");
    }
    crate::common::sys::detach_with_fd(&mut command, listener.as_raw_fd(), LISTENER_FD);
    let child = command
        .arg("serve")
        .current_dir(bundle)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    Ok(child.id())
}

/// `delete`: removes the runtime's container and the rootfs mount; returns the `DeleteResponse`.
pub fn delete(args: &ShimArgs) -> Result<Vec<u8>, String> {
    let bundle = args.bundle_dir()?;
    let options = RuntimeOptions::load(&bundle);
    let runc = options.runc(&args.namespace, &bundle);
    if let Err(e) = runc.delete(&args.id, DeleteOptions { force: true }, &mut DirectWait) {
        if e.kind() != shim_runc::FailureKind::ContainerMissing {
            eprintln!("containerd-shim-tether-v2: {e}");
        }
    }
    unmount_rootfs(&bundle.join("rootfs"));
    crate::shim::record::forget_containerd_entry(&args.id);
    let socket = socket_path(args);
    if UnixStream::connect(&socket).is_err() {
        let _ = std::fs::remove_file(&socket);
    }
    let response = DeleteResponse {
        exit_status: 128 + 9,
        exited_at: Some(crate::front::ttrpc::calls::timestamp(SystemTime::now())).into(),
        ..Default::default()
    };
    response
        .write_to_bytes()
        .map_err(|e| format!("encode the delete response: {e}"))
}
