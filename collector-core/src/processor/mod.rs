//! Built-in processors.

pub mod batch;
pub mod memory_limiter;
pub mod resource;

pub use batch::BatchFactory;
pub use memory_limiter::MemoryLimiterFactory;
pub use resource::ResourceFactory;
