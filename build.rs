//! Link-time settings for the libtorch that torch-sys found.
//!
//! * An rpath to libtorch's library folder, so `saelab` runs without
//!   LD_LIBRARY_PATH wherever the folder lives (the per-user cache, or the
//!   active Python's torch when built with LIBTORCH_USE_PYTORCH=1).
//! * With a CUDA libtorch, `libtorch_cuda.so` kept in the binary's
//!   DT_NEEDED. rustc links with `--as-needed`, and nothing in saelab calls a
//!   symbol of that library — CUDA registers itself with libtorch from its
//!   static initialisers — so the linker would drop it and `device()` would
//!   say "cpu" on a GPU machine.
fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-env-changed=LIBTORCH_USE_PYTORCH");
    let Ok(lib_dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        return;
    };
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib_dir}");
    let lib = std::path::Path::new(&lib_dir);
    if lib.join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-L{lib_dir}");
        println!(
            "cargo:rustc-link-arg=-Wl,--push-state,--no-as-needed,-ltorch_cuda,-ltorch,--pop-state"
        );
    }
}
