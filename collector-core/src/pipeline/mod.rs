//! Pipelines: checking a config against the factories, building the
//! component graph, and starting/stopping it in order.
//!
//! Data path: receiver -> (fanout over pipelines) -> processors in order ->
//! (fanout over exporters) -> exporter. Receivers and exporters are shared by
//! every pipeline that lists them; processors are built once per pipeline.

mod build;
mod observed;
mod plan;

pub use build::Pipelines;
pub use plan::{Plan, components_by_pipeline, plan};

#[cfg(test)]
mod tests;
