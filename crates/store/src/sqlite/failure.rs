//! Why a write to SQLite failed, in the terms the server answers by: a full disk (507), a
//! read-only one (503), or anything else.

use std::path::Path;

use crate::StoreError;

/// Why a group commit failed, told to every write in the group.
#[derive(Clone)]
pub(super) enum CommitFailure {
    Full(String),
    ReadOnly(String),
    Other(String),
}

impl CommitFailure {
    pub(super) fn of(e: rusqlite::Error, dir: &Path) -> CommitFailure {
        match StoreError::from(e) {
            StoreError::StorageFull(t) => CommitFailure::Full(t),
            StoreError::ReadOnly(t) => CommitFailure::ReadOnly(t),
            other => {
                // SQLite reports a full or read-only disk under its WAL or shared-memory file
                // as a plain I/O error: ask the filesystem what state it is in.
                let text = other.to_string();
                match crate::fs::filesystem_state(dir) {
                    Some(crate::fs::FsState::ReadOnly) => CommitFailure::ReadOnly(text),
                    Some(crate::fs::FsState::Full) => CommitFailure::Full(text),
                    None => CommitFailure::Other(text),
                }
            }
        }
    }

    pub(super) fn into_error(self, what: &str) -> StoreError {
        match self {
            CommitFailure::Full(t) => StoreError::StorageFull(format!("{what}: {t}")),
            CommitFailure::ReadOnly(t) => StoreError::ReadOnly(format!("{what}: {t}")),
            CommitFailure::Other(t) => StoreError::Database(format!("{what}: {t}")),
        }
    }
}
