//! The CUDA build loads CUDA: `make build-cuda` (which `make test` runs
//! first) links the pinned torch's CUDA libtorch, and build.rs must keep
//! `libtorch_cuda.so` in the binary's DT_NEEDED — without it the linker's
//! `--as-needed` drops the library and a GPU machine runs on the CPU. These
//! checks need no GPU: libtorch's CUDA backend loads and reports why it has
//! no device, where a CPU libtorch has no CUDA backend at all.
use crate::support::saelab;
use std::path::PathBuf;
use std::process::Command;

/// `make build-cuda`'s binary, or the one SAELAB_CUDA_BINARY names.
fn cuda_binary() -> PathBuf {
    let path = std::env::var_os("SAELAB_CUDA_BINARY")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/cuda/release/saelab")
        });
    assert!(
        path.exists(),
        "no CUDA build at {}: `make build-cuda` makes it (`make test` runs it first)",
        path.display()
    );
    path
}

fn needed_libraries(binary: &PathBuf) -> Vec<String> {
    let out = Command::new("readelf")
        .arg("-d")
        .arg(binary)
        .output()
        .expect("readelf (binutils) runs");
    assert!(
        out.status.success(),
        "readelf failed on {}",
        binary.display()
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|line| line.contains("(NEEDED)"))
        .filter_map(|line| line.split('[').nth(1)?.split(']').next())
        .map(str::to_string)
        .collect()
}

const PRINT_CUDA_INFO: &str = r#"
let info = cuda_info();
print(`runtime_loaded=${info.runtime_loaded}`);
print(`devices=${info.devices}`);
print(`reason=${info.reason}`);
print(`device=${device()}`);
"#;

fn cuda_info_of(mut binary: Command) -> String {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("cuda_info.rhai");
    std::fs::write(&script, PRINT_CUDA_INFO).unwrap();
    let out = binary.arg("run").arg(&script).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn the_cuda_build_keeps_libtorch_cuda_and_loads_the_cuda_runtime() {
    let binary = cuda_binary();
    let needed = needed_libraries(&binary);
    assert!(
        needed.iter().any(|lib| lib == "libtorch_cuda.so"),
        "libtorch_cuda.so is not in DT_NEEDED of {}: {needed:?}",
        binary.display()
    );
    let info = cuda_info_of(Command::new(&binary));
    assert!(info.contains("runtime_loaded=true"), "{info}");
    if info.contains("devices=0") {
        // CUDA's own answer (no driver, no device), not a missing backend.
        assert!(!info.contains("reason=\n"), "{info}");
        assert!(!info.contains("'CUDA' backend"), "{info}");
        assert!(info.contains("device=cpu"), "{info}");
    } else {
        assert!(info.contains("device=cuda"), "{info}");
    }
}

#[test]
fn the_test_build_loads_cuda_exactly_when_it_links_it() {
    // `make test` builds against the CPU libtorch; LIBTORCH_USE_PYTORCH=1
    // with a CUDA torch builds a CUDA binary. Either way the two must agree.
    let linked = needed_libraries(&PathBuf::from(env!("CARGO_BIN_EXE_saelab")))
        .iter()
        .any(|lib| lib == "libtorch_cuda.so");
    let info = cuda_info_of(saelab());
    assert!(
        info.contains(&format!("runtime_loaded={linked}")),
        "linked libtorch_cuda.so: {linked}\n{info}"
    );
}
