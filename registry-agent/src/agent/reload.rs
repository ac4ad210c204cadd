//! Configuration reload (`PUT /v1/agent/reload`, `registry reload`, SIGHUP): the agent
//! re-reads its configuration files and applies the service and check definitions in them,
//! as Consul's `ReloadConfig` does: definitions that are gone are removed, new and changed
//! ones are (re)registered, and registrations made through the API are left alone.

use super::LocalAgent;
use registry_proto::api::{AgentCheckRegistration, AgentServiceRegistration};
use registry_proto::lenient::Lenient;
use registry_server::ServerError;
use serde_json::Value;
use std::collections::BTreeSet;
use std::sync::Arc;

/// Re-reads the configuration: the service and the check definitions, or why it failed.
pub type ReloadSource =
    Arc<dyn Fn() -> Result<(Vec<Value>, Vec<Value>), String> + Send + Sync + 'static>;

/// What reload needs to remember between runs.
#[derive(Default)]
pub(crate) struct ReloadState {
    source: parking_lot::Mutex<Option<ReloadSource>>,
    /// IDs of the services and checks that came from configuration files.
    from_config: parking_lot::Mutex<(BTreeSet<String>, BTreeSet<String>)>,
    /// One reload at a time.
    running: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for ReloadState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReloadState").finish_non_exhaustive()
    }
}

fn service_id(def: &Value) -> Result<String, String> {
    let reg = AgentServiceRegistration::decode_value(def.clone())
        .map_err(|e| format!("service definition: {e}"))?;
    Ok(if reg.id.is_empty() { reg.name } else { reg.id })
}

fn check_id(def: &Value) -> Result<String, String> {
    let reg = AgentCheckRegistration::decode_value(def.clone())
        .map_err(|e| format!("check definition: {e}"))?;
    Ok(if reg.0.check_id.is_empty() {
        reg.0.name
    } else {
        reg.0.check_id
    })
}

impl LocalAgent {
    /// Sets how a reload re-reads the configuration, and registers the definitions read at
    /// startup (remembered as configuration-owned).
    pub async fn load_config_definitions(
        &self,
        source: Option<ReloadSource>,
        services: Vec<Value>,
        checks: Vec<Value>,
    ) -> Result<(), ServerError> {
        *self.reload.source.lock() = source;
        self.apply_definitions(services, checks).await
    }

    async fn apply_definitions(
        &self,
        services: Vec<Value>,
        checks: Vec<Value>,
    ) -> Result<(), ServerError> {
        // Every definition must decode before anything changes.
        let decoded = services
            .iter()
            .map(service_id)
            .collect::<Result<BTreeSet<_>, _>>()
            .and_then(|s| Ok((s, checks.iter().map(check_id).collect::<Result<_, _>>()?)));
        let (new_services, new_checks): (BTreeSet<String>, BTreeSet<String>) =
            decoded.map_err(|e| ServerError::Internal(format!("Failed reloading config: {e}")))?;
        let (old_services, old_checks) = self.reload.from_config.lock().clone();
        for id in old_services.difference(&new_services) {
            if self.remove_service(id).await {
                tracing::info!(service = %id, "reload: service removed from configuration");
            }
        }
        for id in old_checks.difference(&new_checks) {
            if self.remove_check_locked(id) {
                tracing::info!(check = %id, "reload: check removed from configuration");
            }
        }
        self.register_from_config(services).await?;
        self.register_checks_from_config(checks).await?;
        *self.reload.from_config.lock() = (new_services, new_checks);
        self.sync().await;
        Ok(())
    }

    /// Re-reads the configuration files and applies their definitions.
    pub async fn reload_config(&self) -> Result<(), ServerError> {
        let _one = self.reload.running.lock().await;
        let source = self.reload.source.lock().clone();
        let Some(source) = source else {
            tracing::info!("reload: no configuration files to re-read");
            return Ok(());
        };
        let (services, checks) =
            source().map_err(|e| ServerError::Internal(format!("Failed reloading config: {e}")))?;
        self.apply_definitions(services, checks).await?;
        tracing::info!("reload: configuration reloaded");
        Ok(())
    }
}
