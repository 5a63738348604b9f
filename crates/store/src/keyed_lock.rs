//! One async mutex per key, created on first use and forgotten when nobody holds or waits
//! for it, so the table holds only the keys in use.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

#[derive(Default)]
pub(crate) struct KeyedLock {
    locks: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
}

/// Holds a key's lock; dropping it releases the lock and, for the last user, the entry.
pub(crate) struct KeyGuard {
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
    key: String,
    locks: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
}

impl KeyedLock {
    pub async fn lock(&self, key: &str) -> KeyGuard {
        let mutex = self
            .locks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key.to_string())
            .or_default()
            .clone();
        // The guard exists before the wait, so a waiter dropped before it gets the lock (its
        // request cancelled) still takes the entry away if it was the last user.
        let mut g = KeyGuard {
            guard: None,
            key: key.to_string(),
            locks: self.locks.clone(),
        };
        g.guard = Some(mutex.lock_owned().await);
        g
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.locks.lock().unwrap().len()
    }
}

impl Drop for KeyGuard {
    fn drop(&mut self) {
        self.guard.take();
        let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        // Only the table refers to the mutex now: nobody holds it or waits for it. (A caller
        // that cloned it but has not locked yet keeps the count above one.)
        if locks
            .get(&self.key)
            .is_some_and(|m| Arc::strong_count(m) == 1)
        {
            locks.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn keys_do_not_wait_for_each_other() {
        let locks = Arc::new(KeyedLock::default());
        let held = locks.lock("a").await;
        // Another key is free at once, however long "a" is held.
        tokio::time::timeout(Duration::from_secs(1), locks.lock("b"))
            .await
            .expect("b is not blocked by a");
        // The same key waits until the holder lets go.
        let l2 = locks.clone();
        let waiter = tokio::spawn(async move {
            let _g = l2.lock("a").await;
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "a second holder of a waits");
        drop(held);
        tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .expect("released")
            .unwrap();
        assert_eq!(locks.len(), 0, "entries are forgotten once unused");
    }

    #[tokio::test]
    async fn a_waiter_given_up_leaves_no_entry() {
        let locks = KeyedLock::default();
        let held = locks.lock("a").await;
        // A request waiting for the session's lock...
        let mut waiter = Box::pin(locks.lock("a"));
        assert!(futures_util::poll!(&mut waiter).is_pending());
        // ...whose holder lets go, and which is cancelled before it runs again.
        drop(held);
        drop(waiter);
        assert_eq!(locks.len(), 0, "the abandoned wait left its entry behind");
    }
}
