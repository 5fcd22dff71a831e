//! The `hearth` binary's integration tests: the binary run as a process, as users run it.
//!
//! One test binary for the crate (each file below was a binary of its own; one link instead
//! of several on a 2-core machine). Run one part with `cargo test -p hearth --test tests faults::`.

mod backup;
mod cli;
mod common;
mod faults;
mod fidelity;
mod hub;
mod sync;
mod web;
