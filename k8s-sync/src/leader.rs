//! `-leader-elect`: several replicas, one active, through a `coordination.k8s.io/v1` Lease.
//! A replica takes the Lease when it is free, expired or already its own, with the Lease's
//! `resourceVersion` as the optimistic-concurrency guard (a concurrent taker gets 409), and
//! renews it every third of its duration. One that cannot renew within the duration has lost
//! it and stops syncing; on a clean shutdown the holder releases the Lease.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::PostParams;
use kube::Api;

use crate::error::Result;

/// One replica's view of the Lease.
pub struct Elector {
    api: Api<Lease>,
    name: String,
    id: String,
    duration: Duration,
}

impl Elector {
    /// An elector for Lease `namespace/name` with identity `id`.
    pub fn new(
        client: kube::Client,
        namespace: &str,
        name: &str,
        id: &str,
        duration: Duration,
    ) -> Elector {
        Elector {
            api: Api::namespaced(client, namespace),
            name: name.to_string(),
            id: id.to_string(),
            duration,
        }
    }

    /// How often to try or renew.
    pub fn retry_period(&self) -> Duration {
        self.duration / 3
    }

    fn spec(&self, prev: Option<&LeaseSpec>, now: Timestamp) -> LeaseSpec {
        let ours = prev.and_then(|p| p.holder_identity.as_deref()) == Some(self.id.as_str());
        let transitions = prev.and_then(|p| p.lease_transitions).unwrap_or(0);
        LeaseSpec {
            holder_identity: Some(self.id.clone()),
            lease_duration_seconds: Some(self.duration.as_secs().max(1) as i32),
            acquire_time: if ours {
                prev.and_then(|p| p.acquire_time.clone())
            } else {
                Some(MicroTime(now))
            },
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(if ours || prev.is_none() {
                transitions
            } else {
                transitions + 1
            }),
            ..LeaseSpec::default()
        }
    }

    /// One attempt to take or renew the Lease; true when this replica holds it afterwards.
    pub async fn try_acquire(&self) -> Result<bool> {
        let now = Timestamp::now();
        match self.api.get_opt(&self.name).await? {
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(self.spec(None, now)),
                };
                match self.api.create(&PostParams::default(), &lease).await {
                    Ok(_) => Ok(true),
                    Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                    Err(e) => Err(e.into()),
                }
            }
            Some(mut lease) => {
                let spec = lease.spec.clone().unwrap_or_default();
                let holder = spec.holder_identity.clone().unwrap_or_default();
                let dur = spec.lease_duration_seconds.unwrap_or(0).max(0) as i64;
                let expired = match &spec.renew_time {
                    Some(MicroTime(t)) => *t + SignedDuration::from_secs(dur) < now,
                    None => true,
                };
                if !(holder.is_empty() || holder == self.id || expired) {
                    return Ok(false);
                }
                lease.spec = Some(self.spec(Some(&spec), now));
                match self
                    .api
                    .replace(&self.name, &PostParams::default(), &lease)
                    .await
                {
                    Ok(_) => Ok(true),
                    Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                    Err(e) => Err(e.into()),
                }
            }
        }
    }

    /// Gives the Lease up if this replica holds it.
    pub async fn release(&self) -> Result<()> {
        if let Some(mut lease) = self.api.get_opt(&self.name).await? {
            let mut spec = lease.spec.clone().unwrap_or_default();
            if spec.holder_identity.as_deref() == Some(self.id.as_str()) {
                spec.holder_identity = None;
                spec.renew_time = None;
                lease.spec = Some(spec);
                self.api
                    .replace(&self.name, &PostParams::default(), &lease)
                    .await?;
            }
        }
        Ok(())
    }

    /// Keeps renewing; returns once the Lease is lost (no successful renewal within its
    /// duration, or another holder took it).
    pub async fn hold(&self) {
        let mut last_ok = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(self.retry_period()).await;
            match self.try_acquire().await {
                Ok(true) => last_ok = tokio::time::Instant::now(),
                Ok(false) => {
                    tracing::warn!(lease = %self.name, "lease taken by another replica");
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "renewing the lease failed");
                    if last_ok.elapsed() > self.duration {
                        return;
                    }
                }
            }
        }
    }
}
