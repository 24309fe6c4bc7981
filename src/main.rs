//! The `kmsfs` binary: parses the command line and reports errors the way a CLI should.
//! Invoked as `mount.kmsfs` (a link, for /etc/fstab), it translates mount(8)'s calling
//! convention first.

use clap::Parser;

fn main() {
    // Before any thread exists (the mount's peak RSS depends on it).
    kmsfs::fs::mount::tune_allocator();
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let invoked_as = args
        .first()
        .map(std::path::Path::new)
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if invoked_as == "mount.kmsfs" {
        match kmsfs::cli::mount_helper::translate(&args[1..]) {
            Ok(t) if t.is_empty() => std::process::exit(0),
            Ok(t) => args = t,
            Err(e) => {
                eprintln!("{e}");
                std::process::exit(1);
            }
        }
    }
    let is_kms = args.iter().skip(1).any(|a| a == "kms");
    let cli = match kmsfs::cli::Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        // aws-cli exits 252 for a command line it cannot parse; `kmsfs kms` mirrors it.
        Err(e) if is_kms && e.use_stderr() => {
            let _ = e.print();
            std::process::exit(252);
        }
        Err(e) => e.exit(),
    };
    match kmsfs::cli::run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("kmsfs: {e:#}");
            std::process::exit(1);
        }
    }
}
