//! Errors that stop a decode (everything else is a warning in [`crate::Stats`]).

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// Why a trace cannot be decoded at all.
#[derive(Debug)]
pub enum Error {
    /// Reading a file or directory failed.
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// Writing the output failed.
    Output(io::Error),
    /// The path is not a directory.
    NotADirectory(PathBuf),
    /// The directory is empty.
    EmptyDir(PathBuf),
    /// The directory has no `metadata` file.
    MissingMetadata {
        /// The directory.
        dir: PathBuf,
        /// Some of the names found in it.
        found: Vec<String>,
    },
    /// The metadata stream is empty.
    EmptyMetadata,
    /// The metadata stream does not start with a klog header record.
    NotKlogMetadata(String),
    /// The directory is a live relay directory (its `cpuN` are relay buffer files, in shared
    /// memory or debugfs), given as if it were a recorded trace.
    LiveDirectory(PathBuf),
    /// The trace is of a format version this decoder does not know.
    UnsupportedVersion {
        /// The version in the trace.
        found: u16,
    },
    /// No stream carries the metadata's trace id: the metadata belongs to another trace (or
    /// the streams do). Each refused stream is listed.
    TraceIdMismatch {
        /// The metadata file (or "metadata" for bytes in memory).
        metadata: PathBuf,
        /// The metadata's trace id.
        meta_id: u64,
        /// (stream file, its trace id) of every stream refused.
        streams: Vec<(PathBuf, u64)>,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { path, source } => f.write_str(&with_path(path, source)),
            Error::Output(e) => write!(f, "writing output: {e}"),
            Error::NotADirectory(p) => write!(
                f,
                "{}: not a directory (pass the trace directory holding `metadata` and cpu0..)",
                p.display()
            ),
            Error::EmptyDir(p) => write!(
                f,
                "{}: empty directory, not a klog trace (expected `metadata` and cpu0..)",
                p.display()
            ),
            Error::MissingMetadata { dir, found } => {
                write!(
                    f,
                    "{}: no `metadata` file, not a klog trace directory",
                    dir.display()
                )?;
                if !found.is_empty() {
                    write!(f, " (found: {}", found.join(", "))?;
                    f.write_str(")")?;
                }
                Ok(())
            }
            Error::LiveDirectory(p) => write!(
                f,
                "{}: a live relay directory (its cpuN files are relay buffers, not recorded \
                 streams): add --snapshot to decode a copy of its buffers as they are now, or \
                 record it first (`klog-decode record LIVE_DIR OUT_DIR`), or follow it \
                 (`klog-decode --follow LIVE_DIR`)",
                p.display()
            ),
            Error::EmptyMetadata => {
                f.write_str("the metadata stream is empty (the trace was never opened?)")
            }
            Error::NotKlogMetadata(why) => write!(f, "not a klog metadata stream: {why}"),
            Error::UnsupportedVersion { found } => write!(
                f,
                "unsupported klog trace format version {found} (this decoder reads versions {} \
                 to {})",
                klog::wire::VERSION_BASE_DELTAS,
                klog::wire::VERSION
            ),
            Error::TraceIdMismatch {
                metadata,
                meta_id,
                streams,
            } => {
                write!(
                    f,
                    "{}: trace id {meta_id:016x}, but no stream belongs to it:",
                    metadata.display()
                )?;
                for (p, id) in streams {
                    write!(f, " {} has trace id {id:016x};", p.display())?;
                }
                f.write_str(" the metadata and the cpuN files come from different runs")
            }
        }
    }
}

/// `"PATH: ERROR"`, or just the error if its message already names the path (errors from
/// `relay` and from the recorder often do): a message never prints a path twice.
pub fn with_path(path: &Path, err: &dyn fmt::Display) -> String {
    let msg = err.to_string();
    let p = path.display().to_string();
    if !p.is_empty() && msg.contains(&p) {
        msg
    } else {
        format!("{p}: {msg}")
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } | Error::Output(source) => Some(source),
            _ => None,
        }
    }
}
