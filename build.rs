//! Embed libtorch's library folder as an rpath so `saelab` runs without
//! LD_LIBRARY_PATH, wherever the folder lives (the per-user cache, or the
//! active Python's torch when built with LIBTORCH_USE_PYTORCH=1).
fn main() {
    if let Ok(lib_dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib_dir}");
    }
    println!("cargo:rerun-if-env-changed=LIBTORCH");
}
