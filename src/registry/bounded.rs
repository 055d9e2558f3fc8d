//! Bounded concurrency for bulk work: the registry's throughput saturates at a handful of
//! clients, and unbounded fan-out only queues requests and trips timeouts.

use std::future::Future;

use futures::{StreamExt, TryStreamExt};

/// Runs `f` on every item with at most `limit` futures in flight; results come back in input
/// order. Stops at the first error (futures still running are dropped).
pub async fn try_map_bounded<T, R, E, F, Fut>(items: impl IntoIterator<Item = T>, limit: usize, f: F) -> Result<Vec<R>, E>
where
    F: FnMut(T) -> Fut,
    Fut: Future<Output = Result<R, E>>,
{
    futures::stream::iter(items).map(f).buffered(limit.max(1)).try_collect().await
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test]
    async fn keeps_order_and_the_limit() {
        let (now, peak) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let out: Result<Vec<u32>, ()> = try_map_bounded(0..20u32, 3, |i| {
            let (now, peak) = (&now, &peak);
            async move {
                let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(n, Ordering::SeqCst);
                tokio::time::sleep(std::time::Duration::from_millis(u64::from(20 - i))).await;
                now.fetch_sub(1, Ordering::SeqCst);
                Ok(i * 2)
            }
        })
        .await;
        assert_eq!(out.unwrap(), (0..20).map(|i| i * 2).collect::<Vec<_>>());
        assert_eq!(peak.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn stops_at_the_first_error() {
        let out: Result<Vec<u32>, String> =
            try_map_bounded(0..5u32, 0, |i| async move { if i == 2 { Err(format!("item {i}")) } else { Ok(i) } }).await;
        assert_eq!(out.unwrap_err(), "item 2");
    }
}
