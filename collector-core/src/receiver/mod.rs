//! Receivers.
