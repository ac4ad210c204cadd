//! `registry`: a Consul-compatible service registry agent and command-line client.

/// jemalloc rather than glibc malloc: servers and client agents allocate and free many small
/// buffers per request (HTTP heads, JSON bodies, postcard frames), where glibc's free lists
/// and consolidation were the largest entries of the profile. Measured in
/// docs/performance.md ("The process allocator"): more writes and reads per second, less CPU
/// per request, and a smaller catalog in memory.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() {
    // Freed pages go back to the system from jemalloc's own thread, on its decay schedule,
    // also while the process is idle: without it they are returned only on later allocator
    // activity, so an idle server kept the RSS of its last write burst.
    let _ = tikv_jemalloc_ctl::background_thread::write(true);
    let args: Vec<String> = std::env::args().collect();
    std::process::exit(registry_agent::cli::run(&args));
}
