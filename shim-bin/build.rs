//! Link `tether` as a position-dependent executable.
//!
//! A PIE binary is relocated at load time: every page of `.data.rel.ro` and the GOT that holds an
//! absolute address is written by the loader and becomes private to the process (about 170 KiB for
//! tether). The daemon runs once per container, so those pages are paid once per container. With
//! `-no-pie` the linker resolves them at link time and they stay clean and shared between daemons.
fn main() {
    println!("cargo:rustc-link-arg-bin=tether=-no-pie");
}
