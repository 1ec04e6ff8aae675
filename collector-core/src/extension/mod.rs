//! Extensions: components that run beside the pipelines.
