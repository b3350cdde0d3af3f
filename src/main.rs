//! The `ragls` binary: parses the command line, runs it, and turns an error into one line
//! on stderr and an exit code (2: fix your input or settings; 1: anything else).

use clap::Parser;

fn main() {
    let cli = ragls::cli::Cli::parse();
    if let Err(e) = ragls::cli::run(cli) {
        eprintln!("ragls: error: {e}");
        std::process::exit(e.exit_code());
    }
}
