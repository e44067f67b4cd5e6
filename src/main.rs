use std::process::ExitCode;

fn main() -> ExitCode {
    custodia::cli::main()
}
