//! Checkers shared by the workloads. The register linearizability search lives here; the
//! simpler checkers (set, lock, bank, watch, catalog) sit next to their workloads.

pub mod linear;
