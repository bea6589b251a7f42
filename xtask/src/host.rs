//! Host preparation beyond packages.
//!
//! On a cgroup v1 machine with a cgroup2 mount beside it (the "hybrid" layout), any controller that is
//! not mounted as v1 shows up in the unified hierarchy, and crun refuses to run at all ("cgroups in
//! hybrid mode not supported, drop all controllers from cgroupv2"). systemd's own hybrid layout mounts
//! every controller as v1; this does the same for the ones left over, at /sys/fs/cgroup/NAME.

use std::path::Path;

const UNIFIED: &str = "/sys/fs/cgroup/unified";

pub fn prepare_cgroups() -> Result<(), String> {
    let controllers =
        std::fs::read_to_string(Path::new(UNIFIED).join("cgroup.controllers")).unwrap_or_default();
    let leftover: Vec<&str> = controllers.split_whitespace().collect();
    if leftover.is_empty() {
        return Ok(());
    }
    if !nix::unistd::geteuid().is_root() {
        return Err(format!(
            "deps: cgroup controllers {} sit on the cgroup2 hierarchy of a hybrid layout, which crun refuses; \
             run `sudo cargo xtask deps` to mount them as v1",
            leftover.join(", ")
        ));
    }
    for controller in leftover {
        let target = Path::new("/sys/fs/cgroup").join(controller);
        std::fs::create_dir_all(&target)
            .map_err(|e| format!("deps: create {}: {e}", target.display()))?;
        nix::mount::mount(
            Some("cgroup"),
            &target,
            Some("cgroup"),
            nix::mount::MsFlags::empty(),
            Some(controller),
        )
        .map_err(|e| {
            format!(
                "deps: mount the {controller} cgroup controller at {}: {e}",
                target.display()
            )
        })?;
        println!("deps: mounted the {controller} cgroup controller as v1 at {} (crun refuses controllers on a hybrid layout's cgroup2)", target.display());
    }
    Ok(())
}
