//! The pure pod lifecycle state machine.
#![forbid(unsafe_code)]

mod time;

pub use time::Time;
