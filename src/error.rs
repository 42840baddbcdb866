//! The one error type for "the user's input is wrong": a spec key, a command-line flag or
//! value, an input file or line, a run or study directory. `main` exits with code 2 when
//! an error's chain holds one; every other failure exits 1.

/// What the user gave that cannot be used: where it came from, which key or line, and
/// what is allowed instead.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{origin}: {}{message}", key.as_ref().map(|k| format!("key '{k}': ")).unwrap_or_default())]
pub struct UserError {
    /// The file, flag, override, environment variable or directory at fault.
    pub origin: String,
    /// Dotted key path (`train.lr`) where one applies.
    pub key: Option<String>,
    pub message: String,
}

impl UserError {
    pub fn new(origin: impl Into<String>, key: Option<&str>, message: impl Into<String>) -> Self {
        Self {
            origin: origin.into(),
            key: key.map(str::to_string),
            message: message.into(),
        }
    }

    /// An error about a file, flag or directory as a whole.
    pub fn input(origin: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(origin, None, message)
    }
}

/// Does the chain of `err` hold a [`UserError`]?
pub fn is_user_error(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| cause.is::<UserError>())
}
