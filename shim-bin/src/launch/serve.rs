//! The shim daemon `start` leaves behind: serves the Task service until containerd shuts it down.

use super::args::ShimArgs;
use super::start::{socket_path, socket_stem, LISTENER_FD, SOCKET_DIR};
use crate::front::ttrpc::events::Publisher;
use crate::shim::diag::Diag;
use crate::shim::runtime::RuntimeOptions;
use crate::shim::tokens::WAKER;
use crate::shim::{Parts, Supervisor};
use mio::Waker;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::{mpsc, Arc};
use std::time::Duration;

/// Runs the daemon; returns its exit code.
pub fn serve(args: &ShimArgs) -> u8 {
    // Nothing of whoever started us, but the listening socket.
    shim_runc::close_fds_from(4);
    // A reader that went away (containerd restarting) cannot kill the shim: the Rust runtime
    // ignores SIGPIPE before main, and every child gets the default back (shim_runc::prepare_child).
    let bundle = match args.bundle_dir() {
        Ok(bundle) => bundle,
        Err(_) => PathBuf::from("."),
    };
    open_log_fifo(&bundle);
    let diag = Diag::new(&args.id, args.debug);
    match run(args, bundle, diag.clone()) {
        Ok(()) => 0,
        Err(message) => {
            diag.warn(format_args!("shim daemon: {message}"));
            1
        }
    }
}

/// containerd reads the bundle's `log` fifo and copies it into its own log.
fn open_log_fifo(bundle: &std::path::Path) {
    use std::os::unix::fs::OpenOptionsExt;
    let fifo = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(bundle.join("log"));
    if let Ok(fifo) = fifo {
        let _ = nix::unistd::dup2(fifo.as_raw_fd(), 2);
    }
}

fn run(args: &ShimArgs, bundle: PathBuf, diag: Diag) -> Result<(), String> {
    // Before any thread exists.
    let (reaper, poll) = super::reaper_and_poll()?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKER).map_err(|e| e.to_string())?);
    let (jobs, received) = mpsc::channel();
    let door = crate::front::ttrpc::door::spawn(LISTENER_FD, jobs, waker)
        .map_err(|e| format!("serve: {e}"))?;
    let events = Publisher::start(
        &args.namespace,
        std::env::var("TTRPC_ADDRESS")
            .ok()
            .filter(|a| !a.is_empty()),
        diag.clone(),
    );
    diag.debug(format_args!("shim daemon serving"));
    let mut supervisor = Supervisor::new(Parts {
        namespace: args.namespace.clone(),
        id: args.id.clone(),
        bundle_dir: bundle.clone(),
        socket_dir: PathBuf::from(SOCKET_DIR),
        socket_stem: socket_stem(args),
        scratch_dir: bundle.clone(),
        diag: diag.clone(),
        events: Box::new(events.clone()),
        poll,
        reaper,
        jobs: received,
        default_options: RuntimeOptions::load(&bundle),
    });
    // A created container is listed for tether's CLI too, through tether's own door.
    supervisor.on_created = Some(register_containerd);
    supervisor.run();
    if let Some(door) = supervisor.take_door() {
        door.unregister();
    }
    // A containerd container's entry goes with its shim.
    if let Some(mut record) = supervisor.record.take() {
        record.remove();
    }
    // Shutdown's own answer, before the daemon goes.
    door.finish(Duration::from_secs(1));
    // Deliver what is queued (the delete event above all) before going.
    if !events.flush(Duration::from_secs(5)) {
        diag.warn(format_args!(
            "containerd did not take the last events within 5 s"
        ));
    }
    let _ = std::fs::remove_file(socket_path(args));
    diag.debug(format_args!("shim daemon exits"));
    std::process::exit(0);
}

/// containerd's Create made a container: list it in tether's state directory and serve its
/// control socket (the supervisor's [`Supervisor::on_created`], set by the shim's launcher).
fn register_containerd(s: &mut Supervisor) {
    let mut record = match crate::shim::record::Record::make_containerd_entry(&s.id) {
        Ok(record) => record,
        Err(e) => {
            s.diag.info(format_args!("{e}"));
            return;
        }
    };
    let served = crate::front::control::TetherFront::serve(
        record.layout(),
        record.id().clone(),
        crate::front::control::Owner::Containerd,
        s.poll.registry(),
    );
    match served {
        Ok(front) => {
            s.register_door(Box::new(front), crate::front::control::HOOKS);
            s.record = Some(record);
        }
        Err(e) => {
            record.remove();
            s.diag.info(format_args!("not listed by tether: {e}"));
        }
    }
}
