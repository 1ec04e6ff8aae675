//! The set of factories a binary offers, keyed by type name.

use super::{
    AnyExporterFactory, AnyExtensionFactory, AnyProcessorFactory, AnyReceiverFactory, Kind,
};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Registering two factories under one type name.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("duplicate {kind} factory for type {type_name:?}")]
pub struct FactoryError {
    /// The kind of the clashing factories.
    pub kind: Kind,
    /// The clashing type name.
    pub type_name: String,
}

/// Every factory a collector binary knows, like otelcol's `Factories`.
#[derive(Clone, Default)]
pub struct Factories {
    receivers: BTreeMap<&'static str, Arc<dyn AnyReceiverFactory>>,
    processors: BTreeMap<&'static str, Arc<dyn AnyProcessorFactory>>,
    exporters: BTreeMap<&'static str, Arc<dyn AnyExporterFactory>>,
    extensions: BTreeMap<&'static str, Arc<dyn AnyExtensionFactory>>,
}

fn insert<F: ?Sized>(
    map: &mut BTreeMap<&'static str, Arc<F>>,
    kind: Kind,
    names: impl IntoIterator<Item = &'static str>,
    factory: Arc<F>,
) -> Result<(), FactoryError> {
    for name in names {
        if map.insert(name, factory.clone()).is_some() {
            return Err(FactoryError {
                kind,
                type_name: name.to_string(),
            });
        }
    }
    Ok(())
}

impl std::fmt::Debug for Factories {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Factories")
            .field("receivers", &self.receivers.keys())
            .field("processors", &self.processors.keys())
            .field("exporters", &self.exporters.keys())
            .field("extensions", &self.extensions.keys())
            .finish()
    }
}

impl Factories {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a receiver factory under its type name and aliases.
    pub fn receiver(
        &mut self,
        f: impl AnyReceiverFactory + 'static,
    ) -> Result<&mut Self, FactoryError> {
        let names = std::iter::once(f.type_name()).chain(f.aliases().iter().copied());
        insert(
            &mut self.receivers,
            Kind::Receiver,
            names.collect::<Vec<_>>(),
            Arc::new(f) as Arc<dyn AnyReceiverFactory>,
        )?;
        Ok(self)
    }

    /// Adds a processor factory.
    pub fn processor(
        &mut self,
        f: impl AnyProcessorFactory + 'static,
    ) -> Result<&mut Self, FactoryError> {
        let names = std::iter::once(f.type_name()).chain(f.aliases().iter().copied());
        insert(
            &mut self.processors,
            Kind::Processor,
            names.collect::<Vec<_>>(),
            Arc::new(f) as Arc<dyn AnyProcessorFactory>,
        )?;
        Ok(self)
    }

    /// Adds an exporter factory.
    pub fn exporter(
        &mut self,
        f: impl AnyExporterFactory + 'static,
    ) -> Result<&mut Self, FactoryError> {
        let names = std::iter::once(f.type_name()).chain(f.aliases().iter().copied());
        insert(
            &mut self.exporters,
            Kind::Exporter,
            names.collect::<Vec<_>>(),
            Arc::new(f) as Arc<dyn AnyExporterFactory>,
        )?;
        Ok(self)
    }

    /// Adds an extension factory.
    pub fn extension(
        &mut self,
        f: impl AnyExtensionFactory + 'static,
    ) -> Result<&mut Self, FactoryError> {
        let names = std::iter::once(f.type_name()).chain(f.aliases().iter().copied());
        insert(
            &mut self.extensions,
            Kind::Extension,
            names.collect::<Vec<_>>(),
            Arc::new(f) as Arc<dyn AnyExtensionFactory>,
        )?;
        Ok(self)
    }

    /// The receiver factory for a type name.
    pub fn get_receiver(&self, type_name: &str) -> Option<&Arc<dyn AnyReceiverFactory>> {
        self.receivers.get(type_name)
    }
    /// The processor factory for a type name.
    pub fn get_processor(&self, type_name: &str) -> Option<&Arc<dyn AnyProcessorFactory>> {
        self.processors.get(type_name)
    }
    /// The exporter factory for a type name.
    pub fn get_exporter(&self, type_name: &str) -> Option<&Arc<dyn AnyExporterFactory>> {
        self.exporters.get(type_name)
    }
    /// The extension factory for a type name.
    pub fn get_extension(&self, type_name: &str) -> Option<&Arc<dyn AnyExtensionFactory>> {
        self.extensions.get(type_name)
    }

    /// Type names of one kind (aliases included), sorted.
    pub fn names(&self, kind: Kind) -> Vec<&'static str> {
        match kind {
            Kind::Receiver => self.receivers.keys().copied().collect(),
            Kind::Processor => self.processors.keys().copied().collect(),
            Kind::Exporter => self.exporters.keys().copied().collect(),
            Kind::Extension => self.extensions.keys().copied().collect(),
        }
    }

    /// One line per factory: kind, type, stability and signals (for `components`).
    pub fn describe(&self) -> Vec<String> {
        let signals =
            |s: &[crate::pdata::Signal]| s.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(",");
        let mut lines = Vec::new();
        for (name, f) in &self.receivers {
            lines.push(format!(
                "receiver   {name:<16} {:<12} {}",
                f.stability().as_str(),
                signals(f.signals())
            ));
        }
        for (name, f) in &self.processors {
            lines.push(format!(
                "processor  {name:<16} {:<12} {}",
                f.stability().as_str(),
                signals(f.signals())
            ));
        }
        for (name, f) in &self.exporters {
            lines.push(format!(
                "exporter   {name:<16} {:<12} {}",
                f.stability().as_str(),
                signals(f.signals())
            ));
        }
        for (name, f) in &self.extensions {
            lines.push(format!(
                "extension  {name:<16} {:<12} -",
                f.stability().as_str()
            ));
        }
        lines
    }
}
