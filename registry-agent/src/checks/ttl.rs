//! TTL checks (Consul's `CheckTTL`): the timer starts at registration and restarts on every
//! `pass`/`warn`/`fail`/`update`; when it runs out the check turns critical with
//! `TTL expired` (plus the last output reported, if any), and stays so until the next
//! report. The status itself is set by the agent through the local state; this task only
//! keeps the clock.

use super::CheckNotifier;
use registry_proto::model::status;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Output of an expired TTL check.
pub(crate) fn expired_output(last_output: &str) -> String {
    const PREFIX: &str = "TTL expired";
    if last_output.is_empty() {
        PREFIX.to_string()
    } else {
        format!("{PREFIX} (last output before timeout follows): {last_output}")
    }
}

/// Keeps the TTL clock of check `id`; each message on `renewals` (the output reported)
/// restarts it. Ends when the sender is dropped.
pub(crate) async fn run(
    id: String,
    ttl: Duration,
    mut renewals: mpsc::UnboundedReceiver<String>,
    notifier: Arc<dyn CheckNotifier>,
) {
    let mut deadline = Some(Instant::now() + ttl);
    let mut last_output = String::new();
    loop {
        let expiry = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = expiry => {
                tracing::warn!(check = %id, "check missed TTL, is now critical");
                notifier.update_check(&id, status::CRITICAL, expired_output(&last_output));
                deadline = None;
            }
            renewal = renewals.recv() => match renewal {
                Some(output) => {
                    tracing::debug!(check = %id, "TTL renewed");
                    last_output = output;
                    deadline = Some(Instant::now() + ttl);
                }
                None => return,
            },
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::checks::testing::Recorder;

    #[tokio::test(start_paused = true)]
    async fn expires_to_critical_and_renews() {
        let rec = Arc::new(Recorder::default());
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(run("t".into(), Duration::from_secs(10), rx, rec.clone()));

        tokio::time::sleep(Duration::from_secs(9)).await;
        assert!(rec.take().is_empty(), "not expired before the TTL");
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(
            rec.take(),
            vec![(
                "t".to_string(),
                "critical".to_string(),
                "TTL expired".to_string()
            )]
        );
        // Expired once: it does not fire again until renewed.
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(rec.take().is_empty());

        // A renewal restarts the clock and remembers the output.
        tx.send("all good".into()).unwrap();
        tokio::time::sleep(Duration::from_secs(8)).await;
        tx.send("still good".into()).unwrap();
        tokio::time::sleep(Duration::from_secs(8)).await;
        assert!(rec.take().is_empty(), "renewal pushed the deadline");
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(
            rec.take(),
            vec![(
                "t".to_string(),
                "critical".to_string(),
                "TTL expired (last output before timeout follows): still good".to_string()
            )]
        );

        drop(tx);
        task.await.unwrap();
    }
}
