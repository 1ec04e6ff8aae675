//! The four kinds of component a config declares.

use std::fmt;

/// Receivers, processors, exporters and extensions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// Takes data in from the network or elsewhere.
    Receiver,
    /// Transforms data inside a pipeline.
    Processor,
    /// Sends data out.
    Exporter,
    /// Runs beside the pipelines (health check, OpAMP, storage).
    Extension,
}

impl Kind {
    /// The top-level config section of this kind (`receivers`, ...).
    pub fn section(self) -> &'static str {
        match self {
            Kind::Receiver => "receivers",
            Kind::Processor => "processors",
            Kind::Exporter => "exporters",
            Kind::Extension => "extensions",
        }
    }

    /// The kind whose section is named `section`.
    pub fn from_section(section: &str) -> Option<Self> {
        [
            Kind::Receiver,
            Kind::Processor,
            Kind::Exporter,
            Kind::Extension,
        ]
        .into_iter()
        .find(|k| k.section() == section)
    }

    /// Singular name, for messages and metric labels (`receiver`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Receiver => "receiver",
            Kind::Processor => "processor",
            Kind::Exporter => "exporter",
            Kind::Extension => "extension",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
