//! Shell completions (`kmsfs completions bash|zsh|fish`) and man pages (`kmsfs man DIR`,
//! hidden: run by scripts/install), both generated from the clap definitions so they
//! never drift from the real command line.

use std::path::PathBuf;

use anyhow::Context;
use clap::CommandFactory;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

#[derive(Debug, Clone, clap::Args)]
pub struct CompletionsArgs {
    /// The shell to print a completion script for.
    #[arg(value_enum)]
    pub shell: Shell,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ManArgs {
    /// Directory to write kmsfs.1 and one kmsfs-COMMAND.1 per command into.
    pub dir: PathBuf,
}

pub fn run_completions(args: &CompletionsArgs) -> anyhow::Result<i32> {
    let shell = match args.shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    let mut cmd = super::Cli::command();
    clap_complete::generate(shell, &mut cmd, "kmsfs", &mut std::io::stdout());
    Ok(0)
}

pub fn run_man(args: &ManArgs) -> anyhow::Result<i32> {
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("creating {}", args.dir.display()))?;
    let cmd = super::Cli::command();
    let mut written = vec![write_page(&args.dir, "kmsfs", cmd.clone())?];
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("kmsfs-{}", sub.get_name());
        written.push(write_page(
            &args.dir,
            &name,
            sub.clone()
                .display_name(name.clone())
                .bin_name(name.clone()),
        )?);
    }
    for p in written {
        println!("{}", p.display());
    }
    Ok(0)
}

fn write_page(dir: &std::path::Path, name: &str, cmd: clap::Command) -> anyhow::Result<PathBuf> {
    let path = dir.join(format!("{name}.1"));
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd)
        .render(&mut out)
        .with_context(|| format!("rendering {name}.1"))?;
    std::fs::write(&path, out).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}
