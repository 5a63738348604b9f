//! The one writer thread and its group commits: every write waiting is run in a savepoint
//! of one transaction, which commits once, so concurrent pushes share one fsync.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rusqlite::Connection;

use super::failure::CommitFailure;
use super::SqliteMetadataStore;
use crate::{Result, StoreError};

/// Most writes committed together; bounds how long the first in a group waits for the rest.
const MAX_GROUP: usize = 256;

/// A write waiting for the writer thread: runs against the connection inside its savepoint,
/// says whether it succeeded, and returns what to do once the group's commit is known.
pub(super) type WriteJob = Box<dyn FnOnce(&Connection) -> (bool, Completion) + Send>;
type Completion = Box<dyn FnOnce(std::result::Result<(), CommitFailure>) + Send>;

pub(super) fn writer_thread(
    conn: Connection,
    dir: PathBuf,
    last_failure: Arc<Mutex<Option<CommitFailure>>>,
    jobs: std::sync::mpsc::Receiver<WriteJob>,
) {
    while let Ok(first) = jobs.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match jobs.try_recv() {
                Ok(j) => group.push(j),
                Err(_) => break,
            }
        }
        if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
            tracing::error!("metadata write transaction could not start: {e}");
            // Dropping the jobs answers each with this failure.
            *last_failure.lock().unwrap_or_else(|p| p.into_inner()) =
                Some(CommitFailure::of(e, &dir));
            continue;
        }
        let mut completions = Vec::with_capacity(group.len());
        for job in group {
            let savepoint = conn.execute_batch("SAVEPOINT write");
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(&conn)));
            let ok = matches!(outcome, Ok((true, _)));
            let undo = if ok {
                "RELEASE write"
            } else {
                "ROLLBACK TO write; RELEASE write"
            };
            if savepoint.is_ok() {
                let _ = conn.execute_batch(undo);
            }
            if let Ok((_, done)) = outcome {
                completions.push(done);
            }
        }
        let commit = conn
            .execute_batch("COMMIT")
            .map_err(|e| CommitFailure::of(e, &dir));
        if commit.is_err() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        for done in completions {
            done(commit.clone());
        }
    }
}

impl SqliteMetadataStore {
    /// Runs `f` in the next group commit and answers once that commit is durable.
    pub(super) async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel::<Result<T>>();
        let job: WriteJob = Box::new(move |conn| {
            let result = f(conn);
            let ok = result.is_ok();
            let done: Completion = Box::new(move |commit| {
                let _ = tx.send(match (result, commit) {
                    (Ok(v), Ok(())) => Ok(v),
                    (Ok(_), Err(e)) => Err(e.into_error("commit failed")),
                    (Err(e), _) => Err(e),
                });
            });
            (ok, done)
        });
        self.writer
            .send(job)
            .map_err(|_| StoreError::Database("the metadata writer has stopped".into()))?;
        rx.await.map_err(|_| {
            let failure = self
                .last_failure
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            failure
                .unwrap_or(CommitFailure::Other("the writer dropped it".into()))
                .into_error("the metadata write was abandoned")
        })?
    }
}
