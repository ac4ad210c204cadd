//! `registry`: a Consul-compatible service registry agent and command-line client.

fn main() {
    let args: Vec<String> = std::env::args().collect();
    std::process::exit(registry_agent::cli::run(&args));
}
