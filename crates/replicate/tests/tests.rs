//! Replication tests: the replicator against real stores and a real hub, over both transports.
//!
//! One test binary for the crate (each file below was a binary of its own; one link instead
//! of several on a 2-core machine). Run one part with `cargo test -p replicate --test tests convergence::`.

mod convergence;
mod policies;
mod replicate;
mod rpc;
