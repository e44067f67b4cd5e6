use std::process::ExitCode;

/// jemalloc, for its per-thread caches on the read path; allocations of 8 MiB and more (an
/// Argon2 hash's memory) go to its own arena, whose freed pages go back to the system at
/// once (docs/ARCHITECTURE.md, "The allocator").
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    custodia::cli::main()
}
