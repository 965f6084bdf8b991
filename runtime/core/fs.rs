//! Files written so that a crash leaves the whole file or none of it: each
//! write goes to a staging file in the same folder (so the rename stays on
//! one filesystem), is flushed to disk, then renamed over the target.
//! Staging files a killed process leaves behind are found by name and
//! removed by [`remove_staging_files`].
use crate::{Error, Result};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

/// Writes `text` to `path` atomically, creating its folder.
pub fn write_atomic(path: &Path, text: &str) -> Result<()> {
    write_atomic_with(path, |staging| {
        std::fs::write(staging, text).map_err(|e| Error::io(staging, e))
    })
}

/// Writes `path` atomically, creating its folder: `fill` writes the staging
/// path it is given, which is then flushed to disk and renamed into place.
/// For writers that want a path rather than bytes (safetensors, CSV).
pub fn write_atomic_with(path: &Path, fill: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }
    let staging = staging_path(path);
    fill(&staging)?;
    // Without the sync a crash soon after the rename can leave the new name
    // pointing at a file whose data never reached the disk.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&staging)
        .and_then(|file| file.sync_all())
        .map_err(|e| Error::io(&staging, e))?;
    std::fs::rename(&staging, path).map_err(|e| Error::io(path, e))
}

/// The sibling a write of `path` is staged in: `.NAME.tmp-PID`, hidden, and
/// per process so that two processes writing the same file never share one.
pub fn staging_path(path: &Path) -> PathBuf {
    let mut name = OsStr::new(".").to_os_string();
    name.push(path.file_name().unwrap_or_default());
    name.push(format!(".tmp-{}", std::process::id()));
    path.with_file_name(name)
}

/// Whether `name` is a staging name: `….tmp-PID` as [`staging_path`] makes
/// it, or `….tmp`, which saelab's stores used before (a store interrupted
/// then must still clean up when resumed now).
pub fn is_staging_name(name: &OsStr) -> bool {
    let name = name.to_string_lossy();
    if name.ends_with(".tmp") {
        return true;
    }
    match name.rsplit_once(".tmp-") {
        Some((stem, pid)) => {
            !stem.is_empty() && !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit())
        }
        None => false,
    }
}

/// Removes the staging files (and staging folders) directly in `dir`: what
/// interrupted writes left behind, never a finished file.
pub fn remove_staging_files(dir: &Path) -> Result<()> {
    for entry in std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .flatten()
    {
        if !is_staging_name(&entry.file_name()) {
            continue;
        }
        let path = entry.path();
        let removed = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        removed.map_err(|e| Error::io(&path, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_replace_the_file_and_leave_no_staging_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("notes.md");
        write_atomic(&path, "first").unwrap();
        write_atomic(&path, "second").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "second");
        assert!(!staging_path(&path).exists());
        assert_eq!(
            std::fs::read_dir(path.parent().unwrap()).unwrap().count(),
            1
        );
    }

    #[test]
    fn a_failed_write_keeps_the_old_file_and_its_staging_file_is_cleaned_up() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("manifest.json");
        write_atomic(&path, "old").unwrap();
        let failed = write_atomic_with(&path, |staging| {
            std::fs::write(staging, "half").unwrap();
            Err(Error::invalid("disk full"))
        });
        assert!(failed.is_err());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "old");
        assert!(staging_path(&path).exists());
        remove_staging_files(dir.path()).unwrap();
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, ["manifest.json"]);
    }

    #[test]
    fn staging_names_are_recognised_and_finished_names_are_not() {
        let staging = staging_path(Path::new("runs/shard-00001.npy"));
        assert!(is_staging_name(staging.file_name().unwrap()));
        for name in [
            "shard-00003.npy.tmp",
            "cfg.json.tmp-77",
            ".step-00000010.tmp-4242",
        ] {
            assert!(is_staging_name(OsStr::new(name)), "{name}");
        }
        for name in [
            "shard-00003.npy",
            "tmp",
            ".tmp-",
            "notes.tmp-draft",
            "step-00000010",
        ] {
            assert!(!is_staging_name(OsStr::new(name)), "{name}");
        }
    }
}
