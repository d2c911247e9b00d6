//! The `farol` binary: everything lives in the library; see `farol --help`.

fn main() -> std::process::ExitCode {
    farol::cli::main()
}
