//! Argument vectors of every subcommand, minimal and with every option, as snapshots: an option emitted
//! twice or in the wrong place shows up in review.

use shim_runc::{
    CheckpointOptions, CreateOptions, DeleteOptions, ExecOptions, KillOptions, RunOptions, Runc,
    Subcommand,
};

fn render(runc: &Runc, subcommand: &Subcommand) -> String {
    runc.argv(subcommand)
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

fn every_subcommand() -> Vec<(&'static str, Subcommand)> {
    let id = || "web".to_owned();
    let full_create = CreateOptions::new("/b")
        .pid_file("/s/web.pid")
        .console_socket("/s/console.sock")
        .no_pivot(true)
        .no_new_keyring(true);
    vec![
        (
            "create_minimal",
            Subcommand::Create {
                id: id(),
                options: CreateOptions::new("/b"),
            },
        ),
        (
            "create_full",
            Subcommand::Create {
                id: id(),
                options: full_create.clone(),
            },
        ),
        ("start", Subcommand::Start { id: id() }),
        (
            "run_detached_full",
            Subcommand::Run {
                id: id(),
                options: RunOptions {
                    create: full_create,
                    detach: true,
                },
            },
        ),
        (
            "exec_minimal",
            Subcommand::Exec {
                id: id(),
                options: ExecOptions::default(),
                process_file: "/s/p.json".into(),
            },
        ),
        (
            "exec_full",
            Subcommand::Exec {
                id: id(),
                options: ExecOptions {
                    detach: true,
                    pid_file: Some("/s/e.pid".into()),
                    console_socket: Some("/s/c.sock".into()),
                    tty: true,
                    extra_args: Vec::new(),
                },
                process_file: "/s/p.json".into(),
            },
        ),
        (
            "kill",
            Subcommand::Kill {
                id: id(),
                options: KillOptions::new(15),
            },
        ),
        (
            "kill_all",
            Subcommand::Kill {
                id: id(),
                options: KillOptions::new(9).all(true),
            },
        ),
        (
            "delete",
            Subcommand::Delete {
                id: id(),
                options: DeleteOptions::default(),
            },
        ),
        (
            "delete_force",
            Subcommand::Delete {
                id: id(),
                options: DeleteOptions { force: true },
            },
        ),
        ("state", Subcommand::State { id: id() }),
        ("list", Subcommand::List),
        ("ps", Subcommand::Ps { id: id() }),
        ("pause", Subcommand::Pause { id: id() }),
        ("resume", Subcommand::Resume { id: id() }),
        (
            "update",
            Subcommand::Update {
                id: id(),
                resources_file: "/s/r.json".into(),
            },
        ),
        ("stats", Subcommand::Stats { id: id() }),
        ("features", Subcommand::Features),
        (
            "checkpoint_full",
            Subcommand::Checkpoint {
                id: id(),
                options: CheckpointOptions {
                    image_path: "/cp".into(),
                    work_path: Some("/work".into()),
                    leave_running: true,
                    tcp_established: true,
                    external_unix_sockets: true,
                    shell_job: true,
                    file_locks: true,
                },
            },
        ),
    ]
}

#[test]
fn subcommands_with_default_globals() {
    let runc = Runc::new("runc");
    for (name, subcommand) in every_subcommand() {
        insta::assert_snapshot!(name, render(&runc, &subcommand));
    }
}

#[test]
fn every_global_option() {
    let runc = Runc::new("/usr/bin/crun")
        .root("/run/r")
        .log("/run/r/log.json")
        .systemd_cgroup(true)
        .debug(true)
        .rootless(false);
    insta::assert_snapshot!(render(&runc, &Subcommand::Start { id: "web".into() }));
}

#[test]
fn no_option_appears_twice() {
    let runc = Runc::new("runc").root("/r").log("/l");
    for (name, subcommand) in every_subcommand() {
        let argv = runc.argv(&subcommand);
        let flags: Vec<_> = argv
            .iter()
            .filter(|a| a.to_string_lossy().starts_with("--"))
            .collect();
        let mut unique = flags.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(flags.len(), unique.len(), "{name}: {argv:?}");
        assert_eq!(
            argv.iter().filter(|a| *a == "web").count(),
            usize::from(subcommand.container_id().is_some()),
            "{name}"
        );
    }
}

#[test]
fn raw_arguments_go_where_podman_puts_them() {
    // podman's --runtime-arg before the subcommand, its --runtime-opt after the subcommand's
    // options and before the id.
    let runc = Runc::new("runc").systemd_cgroup(true).extra_global_args([
        "--log-format=json",
        "--log",
        "/r/oci-log",
    ]);
    let create = Subcommand::Create {
        id: "web".into(),
        options: CreateOptions::new("/b")
            .pid_file("/r/pidfile")
            .extra_args(["--preserve-fds", "2"]),
    };
    let argv: Vec<String> = runc
        .argv(&create)
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        argv,
        [
            "--systemd-cgroup",
            "--log-format=json",
            "--log",
            "/r/oci-log",
            "create",
            "--bundle",
            "/b",
            "--pid-file",
            "/r/pidfile",
            "--preserve-fds",
            "2",
            "web"
        ]
    );
}
