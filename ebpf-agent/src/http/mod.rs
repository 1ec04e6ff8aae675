//! HTTP/1.x from the probes' byte captures: message heads
//! ([`head`]), the messages of one direction of a connection ([`stream`]),
//! and request/response pairs per connection ([`Assembler`]), which become
//! spans.

mod assembler;
mod head;
mod stream;
#[cfg(test)]
mod tests;

pub(crate) use assembler::{Assembler, AssemblerConfig, AssemblerStats, Exchange};
