//! Which processes are instrumented, and what the agent knows about them.

pub(crate) mod glob;
pub(crate) mod info;
pub(crate) mod listeners;
pub(crate) mod ports;
pub(crate) mod scan;

pub(crate) use info::ProcessInfo;
pub(crate) use ports::PortSet;
