//! The errors that reach a user, each one line that says what is wrong and what to do.
//!
//! Library code returns [`Error`]; only `main` decides how to print it. The variant decides
//! the exit code: problems the user can fix (bad path, bad configuration, a locked or
//! corrupt index) exit with 2, everything else with 1.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad command-line input: a missing workspace, an unreadable queries file.
    #[error("{0}")]
    Usage(String),
    /// A settings file or value that cannot be used.
    #[error("{0}")]
    Config(String),
    #[error("the index at {} is in use by another ragls process; wait for it to finish and try again", .0.display())]
    IndexLocked(PathBuf),
    /// A damaged database (unreadable header, or garbage in interior pages found by a
    /// query, where the path is not known: then `path` is empty).
    #[error("{}", corrupt_message(path, reason))]
    IndexCorrupt { path: PathBuf, reason: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("index database: {0}")]
    Store(String),
    /// The shared (PostgreSQL) index cannot be reached: readers fall back to their local
    /// index; a writer stops.
    #[error("{0}")]
    SharedUnreachable(String),
    #[error("{0}")]
    Other(String),
}

impl Error {
    /// 2 for what the user can fix, 1 for the rest (PROTOCOL.md, "Exit codes").
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_)
            | Error::Config(_)
            | Error::IndexLocked(_)
            | Error::IndexCorrupt { .. } => 2,
            Error::Io { .. } | Error::Store(_) | Error::SharedUnreachable(_) | Error::Other(_) => 1,
        }
    }

    pub fn io(context: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

fn corrupt_message(path: &std::path::Path, reason: &str) -> String {
    let at = if path.as_os_str().is_empty() {
        String::new()
    } else {
        format!(" at {}", path.display())
    };
    format!("the index{at} is damaged ({reason}); run `ragls index --rebuild` to set it aside and rebuild it")
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode::{DatabaseCorrupt, NotADatabase};
        match e.sqlite_error_code() {
            Some(DatabaseCorrupt | NotADatabase) => Error::IndexCorrupt {
                path: PathBuf::new(),
                reason: e.to_string(),
            },
            _ => Error::Store(e.to_string()),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
