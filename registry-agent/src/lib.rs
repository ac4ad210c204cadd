//! The `registry` binary's library: agent configuration ([`config`]), the Consul-compatible
//! command line ([`cli`]), logging ([`logging`]) and agent startup ([`start`]).

pub mod ae;
pub mod agent;
pub mod checks;
pub mod cli;
pub mod config;
pub mod coordinate;
pub mod gossip;
pub mod local;
pub mod log_sinks;
pub mod logging;
pub mod start;
