//! The `farol` binary: everything lives in the library; see `farol --help`.

// The importer and the segmentation allocate many short-lived strings on several threads;
// mimalloc measured faster than glibc's allocator there (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    farol::cli::main()
}
