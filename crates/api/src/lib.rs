//! Manifests in, valid objects out: loading, defaulting and validation.
#![forbid(unsafe_code)]
