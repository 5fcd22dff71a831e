//! The records layer's integration tests: sessions, access, audit and the conflict inbox on real stores.
//!
//! One test binary for the crate (each file below was a binary of its own; one link instead
//! of several on a 2-core machine). Run one part with `cargo test -p records --test tests conflicts::`.

mod conflicts;
mod records;
