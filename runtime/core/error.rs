//! One error type for the whole core, so every layer above can report any
//! failure as a value with a readable message.
use std::path::PathBuf;

/// What went wrong, for callers that act on the kind of failure.
#[derive(Debug, thiserror::Error)]
pub enum ErrorKind {
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
    Gguf(#[from] crate::model::GgufError),
    /// A tokenizer that cannot be built from a model's metadata, or bad ids.
    #[error("{0}")]
    Tokenizer(#[from] crate::model::TokenizerError),
    /// A scaling-law fit that cannot be made (too few points, bad options, ...).
    #[error("{0}")]
    Fit(#[from] crate::scaling::FitError),
    /// A figure that cannot be drawn or saved.
    #[error("{0}")]
    Plot(#[from] crate::plot::PlotError),
    /// A long computation stopped by Ctrl-C.
    #[error("interrupted")]
    Interrupted,
    /// Training whose loss stopped being finite (a learning rate too high,
    /// or NaN in the data): a result a learning-rate sweep records.
    #[error("{message}")]
    Diverged {
        step: u64,
        loss: f64,
        message: String,
    },
}

/// A core error: its kind, and its message rendered once. The message makes
/// it `AsRef<str>`, which is all a front end needs to show it (rhai turns any
/// `AsRef<str>` into a script error), so the core needs no scripting types.
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    message: String,
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn invalid(message: impl Into<String>) -> Self {
        ErrorKind::Invalid(message.into()).into()
    }

    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ErrorKind::Io {
            path: path.into(),
            source,
        }
        .into()
    }

    pub fn interrupted() -> Self {
        ErrorKind::Interrupted.into()
    }

    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }

    /// The step and loss of training that diverged, if this is that error.
    pub fn diverged(&self) -> Option<(u64, f64)> {
        match self.kind {
            ErrorKind::Diverged { step, loss, .. } => Some((step, loss)),
            _ => None,
        }
    }

    /// A Ctrl-C, which callers pass on rather than record as a failure.
    pub fn is_interrupted(&self) -> bool {
        matches!(self.kind, ErrorKind::Interrupted)
    }
}

impl From<ErrorKind> for Error {
    fn from(kind: ErrorKind) -> Self {
        Error {
            message: kind.to_string(),
            kind,
        }
    }
}

/// Every error a core function meets converts through its kind.
macro_rules! from_kind {
    ($($source:ty),*) => {$(
        impl From<$source> for Error {
            fn from(err: $source) -> Self {
                ErrorKind::from(err).into()
            }
        }
    )*};
}

from_kind!(
    tch::TchError,
    crate::model::GgufError,
    crate::model::TokenizerError,
    crate::scaling::FitError,
    crate::plot::PlotError
);

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&self.kind)
    }
}

impl AsRef<str> for Error {
    fn as_ref(&self) -> &str {
        &self.message
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
