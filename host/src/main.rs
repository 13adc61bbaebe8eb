//! `taxii-host`: imports TAXII feeds through sandboxed plugins into event
//! stores, and reads them back as STIX.
//!
//! Exit codes: 0 success, 1 the operation failed (the message says why and
//! what to do), 2 the command line was wrong.

use std::process::ExitCode;

use clap::Parser;
use taxii_host::cli::{self, Cli};

fn main() -> ExitCode {
    let cli = Cli::parse();
    cli::init_tracing(&cli);
    match cli::run(cli) {
        Ok(code) => code,
        Err(error) if cli::is_broken_pipe(&error) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            if cli::is_usage_error(&error) {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
