//! Scheduled passes (scrub, collection) among replicas: each replica wakes every interval,
//! and a pass runs only where no other replica runs it now and none finished it less than
//! an interval ago, so the replicas share one pass per interval instead of running one each.

use std::future::Future;
use std::time::Duration;

use crate::{Registry, Result};

impl Registry {
    /// Runs `pass` as scheduled pass `name` (every `every`), unless another replica runs it
    /// now or finished it within the interval; `Ok(None)` when it did not run.
    pub async fn scheduled_pass<T, F, Fut>(
        &self,
        name: &str,
        every: Duration,
        pass: F,
    ) -> Result<Option<T>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = T>,
    {
        let Some(lock) = self.meta.scheduled_pass_lock(name).await? else {
            return Ok(None);
        };
        // A tenth of the interval's slack: this replica's own previous pass ended one sleep
        // ago, no more.
        let recent = (every.as_millis() - every.as_millis() / 10) as i64;
        let key = format!("pass-finished-ms/{name}");
        let last = self.meta.state_get(&key).await?;
        if last.is_some_and(|at| now_ms() - at < recent) {
            lock.release().await;
            return Ok(None);
        }
        let out = pass().await;
        let recorded = self.meta.state_set(&key, now_ms()).await;
        lock.release().await;
        recorded.map(|()| Some(out))
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
