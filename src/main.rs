//! The `kmsfs` binary: parses the command line and reports errors the way a CLI should.

use clap::Parser;

fn main() {
    let cli = kmsfs::cli::Cli::parse();
    match kmsfs::cli::run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("kmsfs: {e:#}");
            std::process::exit(1);
        }
    }
}
