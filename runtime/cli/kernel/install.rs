//! `saelab kernel install`: writes the kernelspec (`kernels/saelab/` with
//! kernel.json and two logos) where Jupyter looks for kernels, following
//! `jupyter --paths`: the user's data folder, the environment's
//! `share/jupyter`, or a given prefix's.
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The kernelspec's folder name, which notebooks record as `kernelspec.name`.
pub const KERNEL_NAME: &str = "saelab";
pub const DISPLAY_NAME: &str = "saelab (Rhai)";

const LOGO_32: &[u8] = include_bytes!("logo/logo-32x32.png");
const LOGO_64: &[u8] = include_bytes!("logo/logo-64x64.png");

/// Where to install.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// The user's Jupyter data folder (`jupyter --data-dir`).
    User,
    /// The active Python environment's `share/jupyter`.
    SysPrefix,
    /// `PREFIX/share/jupyter`.
    Prefix(PathBuf),
}

#[derive(Debug, Clone)]
pub struct InstallOptions {
    pub location: Location,
    /// How Jupyter interrupts a cell: "message" (an `interrupt_request` on
    /// the control channel) or "signal" (SIGINT); the kernel handles both.
    pub interrupt_mode: String,
}

/// Installs the kernelspec and returns its folder.
pub fn install(options: &InstallOptions) -> Result<PathBuf, String> {
    if !matches!(options.interrupt_mode.as_str(), "message" | "signal") {
        return Err(format!(
            "--interrupt-mode must be message or signal, not {:?}",
            options.interrupt_mode
        ));
    }
    let data_dir = data_dir(&options.location)?;
    let dir = data_dir.join("kernels").join(KERNEL_NAME);
    let binary = std::env::current_exe()
        .and_then(|p| p.canonicalize())
        .map_err(|e| format!("cannot find the saelab binary's path: {e}"))?;
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let spec = kernel_json(&binary, &options.interrupt_mode);
    write(&dir.join("kernel.json"), spec.as_bytes())?;
    write(&dir.join("logo-32x32.png"), LOGO_32)?;
    write(&dir.join("logo-64x64.png"), LOGO_64)?;
    Ok(dir)
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), String> {
    std::fs::write(path, bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// The kernelspec: Jupyter runs `saelab kernel --connection-file FILE`.
pub fn kernel_json(binary: &Path, interrupt_mode: &str) -> String {
    let spec = json!({
        "argv": [binary.display().to_string(), "kernel", "--connection-file", "{connection_file}"],
        "display_name": DISPLAY_NAME,
        "language": "rhai",
        "interrupt_mode": interrupt_mode,
        "metadata": { "debugger": false },
    });
    serde_json::to_string_pretty(&spec).unwrap_or_default()
}

/// The Jupyter data folder for a location (`jupyter_core.paths`' rules).
fn data_dir(location: &Location) -> Result<PathBuf, String> {
    match location {
        Location::User => user_data_dir(),
        Location::SysPrefix => Ok(sys_prefix()?.join("share").join("jupyter")),
        Location::Prefix(prefix) => Ok(prefix.join("share").join("jupyter")),
    }
}

/// `$JUPYTER_DATA_DIR`, else `~/Library/Jupyter` on macOS, else
/// `$XDG_DATA_HOME/jupyter` (`~/.local/share/jupyter`).
fn user_data_dir() -> Result<PathBuf, String> {
    if let Some(dir) = std::env::var_os("JUPYTER_DATA_DIR").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .ok_or("HOME is not set; use --prefix")?;
    if cfg!(target_os = "macos") {
        return Ok(home.join("Library").join("Jupyter"));
    }
    let data_home = std::env::var_os("XDG_DATA_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| home.join(".local").join("share"));
    Ok(data_home.join("jupyter"))
}

/// The active environment: a virtualenv, a conda environment, or else the
/// prefix of the `python3` on PATH.
fn sys_prefix() -> Result<PathBuf, String> {
    for variable in ["VIRTUAL_ENV", "CONDA_PREFIX"] {
        if let Some(prefix) = std::env::var_os(variable).filter(|p| !p.is_empty()) {
            return Ok(PathBuf::from(prefix));
        }
    }
    let output = Command::new("python3")
        .args(["-c", "import sys; print(sys.prefix)"])
        .output()
        .map_err(|e| format!("--sys-prefix: no active environment and no python3 to ask ({e})"))?;
    let prefix = String::from_utf8_lossy(&output.stdout).trim().to_string();
    if !output.status.success() || prefix.is_empty() {
        return Err("--sys-prefix: python3 did not report its sys.prefix".into());
    }
    Ok(PathBuf::from(prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernelspec_runs_this_binary_with_the_connection_file() {
        let spec: serde_json::Value =
            serde_json::from_str(&kernel_json(Path::new("/opt/saelab"), "message")).unwrap();
        assert_eq!(
            spec["argv"],
            json!([
                "/opt/saelab",
                "kernel",
                "--connection-file",
                "{connection_file}"
            ])
        );
        assert_eq!(spec["language"], "rhai");
        assert_eq!(spec["display_name"], "saelab (Rhai)");
        assert_eq!(spec["interrupt_mode"], "message");
    }

    #[test]
    fn a_prefix_installs_under_its_share_jupyter() {
        let dir = data_dir(&Location::Prefix("/tmp/env".into())).unwrap();
        assert_eq!(dir, Path::new("/tmp/env/share/jupyter"));
    }

    #[test]
    fn the_logos_are_pngs_of_their_size() {
        for (bytes, side) in [(LOGO_32, 32u32), (LOGO_64, 64)] {
            assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
            assert_eq!(u32::from_be_bytes(bytes[16..20].try_into().unwrap()), side);
        }
    }
}
