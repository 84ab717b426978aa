//! The `linkcal` binary: parse, call the library, print the error, exit with its code.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = linkcal::cli::Cli::parse();
    match linkcal::cli::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("linkcal: error: {e:#}");
            ExitCode::from(linkcal::cli::exit_code(&e))
        }
    }
}
