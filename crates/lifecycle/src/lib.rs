//! The pure pod lifecycle state machine.
#![forbid(unsafe_code)]
