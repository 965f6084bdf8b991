//! One error type for the whole core, so every layer above can report any
//! failure as a value with a readable message.
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An error raised inside libtorch (shape mismatch, bad index, ...).
    #[error("{}", torch_message(.0))]
    Torch(#[from] tch::TchError),
    /// Arguments that make no sense for the operation.
    #[error("{0}")]
    Invalid(String),
    /// A file that could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A model file that cannot be read (truncated, corrupt, unsupported type).
    #[error("{0}")]
    Gguf(#[from] crate::core::model::GgufError),
    /// A tokenizer that cannot be built from a model's metadata, or bad ids.
    #[error("{0}")]
    Tokenizer(#[from] crate::core::model::TokenizerError),
    /// A scaling-law fit that cannot be made (too few points, bad options, ...).
    #[error("{0}")]
    Fit(#[from] crate::core::scaling::FitError),
    /// A figure that cannot be drawn or saved.
    #[error("{0}")]
    Plot(#[from] crate::core::plot::PlotError),
    /// A long computation stopped by Ctrl-C.
    #[error("interrupted")]
    Interrupted,
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn invalid(message: impl Into<String>) -> Self {
        Error::Invalid(message.into())
    }

    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// libtorch's messages end with a C++ backtrace ("Exception raised from ...")
/// that means nothing to a researcher; keep the sentence before it.
pub fn torch_message(err: &tch::TchError) -> String {
    let raw = match err {
        tch::TchError::Torch(message) => message.clone(),
        other => other.to_string(),
    };
    let kept: Vec<&str> = raw
        .lines()
        .take_while(|line| !line.starts_with("Exception raised from"))
        .filter(|line| !line.trim().is_empty())
        .collect();
    if kept.is_empty() {
        raw.lines().next().unwrap_or("libtorch error").to_string()
    } else {
        kept.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torch_messages_drop_the_cpp_backtrace() {
        let err = tch::TchError::Torch(
            "shape '[2, 3]' is invalid for input of size 5\nException raised from infer_size at ...\nframe #0: ...".into(),
        );
        assert_eq!(
            Error::from(err).to_string(),
            "shape '[2, 3]' is invalid for input of size 5"
        );
    }
}
