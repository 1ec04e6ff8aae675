//! Extensions: components that run beside the pipelines.

pub mod file_storage;
pub mod health_check;
pub mod opamp;
