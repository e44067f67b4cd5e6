use std::process::ExitCode;

/// mimalloc rather than the C library's allocator: a read allocates and frees 64 KiB
/// buffers among many small ones, which glibc's bins handled at a fifth of a busy node's
/// time (BENCHMARKS.md, "The allocator").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    custodia::cli::main()
}
