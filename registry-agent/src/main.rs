//! `registry`: a Consul-compatible service registry agent and command-line client.

/// jemalloc rather than glibc malloc: servers and client agents allocate and free many small
/// buffers per request (HTTP heads, JSON bodies, postcard frames), where glibc's free lists
/// and consolidation were the largest entries of the profile. Measured in
/// docs/performance.md ("The process allocator"): more writes and reads per second, less CPU
/// per request, and a smaller catalog in memory.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    std::process::exit(registry_agent::cli::run(&args));
}
