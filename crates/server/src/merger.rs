//! Automatic Bitcask merges.
//!
//! Every overwrite or delete leaves a dead record in the state machine's
//! Bitcask files; without merges the data dir grows with every write. A
//! task looks at the engine every `storage.merge_check_interval_ms` and,
//! when dead records are at least `storage.merge_dead_percent` % of the
//! record bytes and at least `storage.merge_dead_bytes_min` bytes, runs
//! [`bitcask::Bitcask::merge_files`] on a blocking thread. The merge runs
//! beside the apply thread's writes and the services' reads (the engine is
//! built for that, see the `bitcask` crate's "Merge"); only closed data
//! files are merged, so dead records in the active file wait until it is
//! closed (`storage.file_size_max`). One merge at a time; a failed merge is
//! logged and tried again at the next check (a merge that fails leaves the
//! files as they were).
//!
//! The node waits for a running merge to finish when it stops, so that a
//! restart in the same process never opens the directory under a merge.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::apply::Engine;
use crate::config::Storage;

/// Whether the engine's dead records are worth a merge under `policy`.
pub(crate) fn due(policy: &Storage, status: &bitcask::Status) -> bool {
    policy.merge_dead_percent > 0
        && status.dead_bytes >= policy.merge_dead_bytes_min.max(1)
        && status.dead_ratio() * 100.0 >= f64::from(policy.merge_dead_percent)
}

/// Checks the engine periodically and merges when [`due`]; returns once
/// `stop` is set.
pub(crate) async fn run(
    id: u64,
    engine: Arc<Engine>,
    policy: Storage,
    mut stop: watch::Receiver<bool>,
) {
    let every = Duration::from_millis(policy.merge_check_interval_ms);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = crate::transport::stopped(&mut stop) => return,
        }
        let e = Arc::clone(&engine);
        let p = policy.clone();
        let r = tokio::task::spawn_blocking(move || {
            let before = bitcask::Engine::status(&*e)?;
            if !due(&p, &before) {
                return Ok(None);
            }
            let started = std::time::Instant::now();
            e.merge_files()?;
            let after = bitcask::Engine::status(&*e)?;
            Ok::<_, bitcask::Error>(Some((before, after, started.elapsed())))
        })
        .await;
        match &r {
            Ok(Ok(Some(_))) => crate::observe::metrics::merge(id, true),
            Ok(Err(_)) | Err(_) => crate::observe::metrics::merge(id, false),
            Ok(Ok(None)) => {}
        }
        match r {
            Ok(Ok(Some((before, after, took)))) => tracing::info!(
                node = id,
                dead_bytes_before = before.dead_bytes,
                dead_bytes_after = after.dead_bytes,
                disk_bytes_before = before.disk_bytes,
                disk_bytes_after = after.disk_bytes,
                took_ms = took.as_millis() as u64,
                "state machine files merged"
            ),
            Ok(Ok(None)) => {}
            Ok(Err(e)) => tracing::warn!(node = id, error = %e, "merge failed; retrying later"),
            Err(e) => tracing::warn!(node = id, error = %e, "merge task failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(live: u64, dead: u64) -> bitcask::Status {
        bitcask::Status {
            live_bytes: live,
            dead_bytes: dead,
            ..bitcask::Status::default()
        }
    }

    #[test]
    fn merge_is_due_only_past_both_thresholds_and_never_when_off() {
        let p = Storage {
            merge_dead_percent: 50,
            merge_dead_bytes_min: 1000,
            ..Storage::default()
        };
        assert!(due(&p, &status(1000, 1000)));
        assert!(!due(&p, &status(1001, 999)), "too few dead bytes");
        assert!(!due(&p, &status(3000, 2000)), "40 % dead");
        assert!(!due(&p, &status(0, 0)));
        let off = Storage {
            merge_dead_percent: 0,
            ..p.clone()
        };
        assert!(!due(&off, &status(0, 1 << 30)));
    }
}
