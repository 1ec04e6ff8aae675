//! `opamp` extension: reports the collector to an OpAMP server (description,
//! effective config, health, heartbeats) and applies the configuration the
//! server pushes, in-process, with the same pipeline swap as a SIGHUP reload.
//! Stability: alpha.
//!
//! otelcol's extension of the same name only reports (its separate
//! supervisor applies remote config by restarting the collector); this one
//! does both, so a config change loses no data. The protocol and messages
//! follow the OpAMP specification ([`proto`]); [`config`] has the keys.

pub mod config;
pub mod proto;

mod client;
mod identity;
pub(crate) mod remote;
mod report;
mod transport;

use crate::component::{
    ComponentError, CreateContext, Extension, ExtensionFactory, Factory, Host, Lifecycle, Stability,
};
use crate::config::ConfigError;
use async_trait::async_trait;
use client::ClientHandle;
pub use config::OpampConfig;
use parking_lot::Mutex;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

/// Builds `opamp` extensions.
#[derive(Clone, Copy, Debug, Default)]
pub struct OpampFactory;

impl Factory for OpampFactory {
    type Config = OpampConfig;
    fn type_name(&self) -> &'static str {
        "opamp"
    }
    fn stability(&self) -> Stability {
        Stability::Alpha
    }
    fn validate(&self, config: &OpampConfig) -> Result<(), ConfigError> {
        config.validate()
    }
}

impl ExtensionFactory for OpampFactory {
    fn create(
        &self,
        ctx: &CreateContext,
        config: &OpampConfig,
    ) -> Result<Arc<dyn Extension>, ComponentError> {
        Ok(Arc::new(Opamp {
            id: ctx.id.to_string(),
            config: config.clone(),
            host: ctx.host.clone(),
            client: Mutex::new(None),
        }))
    }
}

/// A running `opamp` extension: one generation's hold on the shared client.
#[derive(Debug)]
pub struct Opamp {
    id: String,
    config: OpampConfig,
    host: Arc<Host>,
    client: Mutex<Option<Arc<ClientHandle>>>,
}

impl Opamp {
    /// Where the client of this extension id is kept between generations.
    fn directory_key(&self) -> String {
        format!("{}#opamp-client", self.id)
    }
}

#[async_trait]
impl Lifecycle for Opamp {
    async fn start(&self) -> Result<(), ComponentError> {
        let key = self.directory_key();
        if let Some(running) = self.host.services.get::<ClientHandle>(&key)
            && running.settings == self.config
            && running.is_running()
        {
            running.holders.fetch_add(1, Ordering::SeqCst);
            *self.client.lock() = Some(running);
            return Ok(());
        }
        let client = ClientHandle::spawn(self.id.clone(), self.config.clone(), self.host.clone())
            .map_err(ComponentError::new)?;
        self.host.services.publish(&key, client.clone());
        *self.client.lock() = Some(client);
        Ok(())
    }

    async fn shutdown(&self, deadline: Instant) -> Result<(), ComponentError> {
        let client = self.client.lock().take();
        if let Some(client) = client
            && client.holders.fetch_sub(1, Ordering::SeqCst) == 1
        {
            client.stop(deadline).await;
            self.host.services.withdraw(&self.directory_key(), &client);
        }
        Ok(())
    }
}
