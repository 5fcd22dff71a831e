//! The store's integration tests: a real SQLCipher file, documents, changes, audit and backups.
//!
//! One test binary for the crate (each file below was a binary of its own; one link instead
//! of several on a 2-core machine). Run one part with `cargo test -p store --test tests backup::`.

mod backup;
mod store;
