//! Extensions: components that run beside the pipelines.

pub mod health_check;
