//! Named tensors on disk in the safetensors format. Writes go through
//! [`crate::fs::write_atomic_with`], so a crash never leaves half a file.
use crate::{Error, Result, Tensor};
use std::path::Path;

/// Saves named tensors to `path` atomically.
pub fn save_tensors(path: &Path, tensors: &[(String, Tensor)]) -> Result<()> {
    let pairs: Vec<(&str, tch::Tensor)> = tensors
        .iter()
        .map(|(name, t)| Ok((name.as_str(), t.inner().f_detach()?.f_contiguous()?)))
        .collect::<Result<_>>()?;
    crate::fs::write_atomic_with(path, |staging| {
        tch::Tensor::write_safetensors(&pairs, staging)
            .map_err(|e| Error::invalid(format!("cannot write {}: {}", path.display(), e)))
    })
}

/// Loads every tensor of a safetensors file, in file order.
pub fn load_tensors(path: &Path) -> Result<Vec<(String, Tensor)>> {
    if !path.exists() {
        return Err(Error::io(
            path,
            std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
        ));
    }
    let tensors = tch::Tensor::read_safetensors(path).map_err(|e| {
        Error::invalid(format!(
            "{} is not a readable safetensors file: {}",
            path.display(),
            crate::error::torch_message(&e)
        ))
    })?;
    Ok(tensors
        .into_iter()
        .map(|(n, t)| (n, Tensor::new(t)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    #[test]
    fn tensors_round_trip_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.safetensors");
        let a = Tensor::from_f64(&[1.5, -2.0, 3.25], &[3], Kind::Float).unwrap();
        save_tensors(&path, &[("a".into(), a.clone())]).unwrap();
        let loaded = load_tensors(&path).unwrap();
        assert_eq!(loaded[0].0, "a");
        assert_eq!(loaded[0].1.to_f64_vec().unwrap(), a.to_f64_vec().unwrap());
    }

    #[test]
    fn corrupt_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.safetensors");
        std::fs::write(&path, b"not a safetensors file").unwrap();
        assert!(load_tensors(&path).is_err());
        assert!(load_tensors(&dir.path().join("missing.safetensors")).is_err());
    }
}
