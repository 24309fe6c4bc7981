//! Getting the store's passphrase into the process and nowhere else: from a file, from
//! `KMSFS_PASSPHRASE` (then scrubbed from the process's environment, including the
//! initial environment block that `/proc/PID/environ` shows), or typed at the terminal
//! without echo. Never prints or logs a secret. [`RootKeyOpts`] is the flags every
//! store-opening command takes for it.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{bail, Context};
use zeroize::Zeroizing;

use crate::kms::RootKeySource;

/// The environment variable that carries the passphrase itself (for CI).
pub const PASSPHRASE_ENV: &str = "KMSFS_PASSPHRASE";

/// Where a command's root key secret comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretSource {
    /// `--passphrase-file` / `KMSFS_PASSPHRASE_FILE`.
    PassphraseFile,
    /// `KMSFS_PASSPHRASE`.
    PassphraseEnv,
    /// Typed at the controlling terminal, without echo.
    Prompt,
    /// The root key file (`--root-key-file`, default `<store>/root.key`).
    KeyFile,
}

/// Picks the source: an explicit file, then the environment variable, then, only for a
/// store sealed by a passphrase and only with a terminal to ask on, a prompt; otherwise
/// the key file (for a passphrase store without a terminal, opening then fails with a
/// message naming `--passphrase-file` and `KMSFS_PASSPHRASE`, as CI needs).
pub fn choose(
    file_given: bool,
    env_given: bool,
    store_wants_passphrase: bool,
    terminal: bool,
) -> SecretSource {
    if file_given {
        SecretSource::PassphraseFile
    } else if env_given {
        SecretSource::PassphraseEnv
    } else if store_wants_passphrase && terminal {
        SecretSource::Prompt
    } else {
        SecretSource::KeyFile
    }
}

/// `KMSFS_PASSPHRASE`, read once per process: later calls get the same value although
/// the variable is gone from the environment by then.
static ENV_PASSPHRASE: Mutex<Option<Option<Zeroizing<String>>>> = Mutex::new(None);

/// The passphrase from `KMSFS_PASSPHRASE` (None when unset or empty). The first call
/// reads it and scrubs it from the environment (see [`scrub_env`]); call it before the
/// process starts threads, as `mount` and `serve` do.
pub fn env_passphrase() -> Option<Zeroizing<String>> {
    let mut cached = ENV_PASSPHRASE.lock().unwrap_or_else(|p| p.into_inner());
    if cached.is_none() {
        let value = std::env::var(PASSPHRASE_ENV)
            .ok()
            .filter(|v| !v.is_empty())
            .map(Zeroizing::new);
        scrub_env(PASSPHRASE_ENV);
        *cached = Some(value);
    }
    cached.clone().flatten()
}

/// Removes `name` from the environment so that neither children nor readers of
/// `/proc/PID/environ` see it. `std::env::remove_var` alone is not enough: it unlinks
/// the entry from `environ` but leaves the bytes in the initial environment block on the
/// stack, which is what `/proc/PID/environ` shows. So every `name=value` string is first
/// overwritten in place with NUL bytes, then the variable is removed.
fn scrub_env(name: &str) {
    let prefix = format!("{name}=");
    // SAFETY: `environ` is the C library's NULL-terminated array of pointers to
    // NUL-terminated strings; we only read the pointers and overwrite bytes inside the
    // strings they point to, never past their terminating NUL. Callers run this before
    // starting threads (documented on `env_passphrase`), so no getenv races with it.
    unsafe {
        let mut entry = libc::environ;
        while !entry.is_null() && !(*entry).is_null() {
            let s = *entry;
            let len = libc::strlen(s);
            let matches = len >= prefix.len()
                && std::slice::from_raw_parts(s.cast::<u8>(), prefix.len()) == prefix.as_bytes();
            if matches {
                // volatile: the bytes are never read again, so a plain write could be
                // optimised away.
                for i in 0..len {
                    std::ptr::write_volatile(s.add(i), 0);
                }
            }
            entry = entry.add(1);
        }
    }
    std::env::remove_var(name);
}

/// The controlling terminal, if this process has one.
pub fn terminal() -> Option<std::fs::File> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .ok()
}

/// Restores the terminal's settings when dropped, also on an early return.
struct EchoOff<'a> {
    tty: &'a std::fs::File,
    saved: nix::sys::termios::Termios,
}

impl Drop for EchoOff<'_> {
    fn drop(&mut self) {
        let _ = nix::sys::termios::tcsetattr(
            self.tty,
            nix::sys::termios::SetArg::TCSAFLUSH,
            &self.saved,
        );
    }
}

/// Asks for the passphrase on `tty` with echo off (the newline is still echoed).
pub fn prompt(tty: &std::fs::File, question: &str) -> anyhow::Result<Zeroizing<String>> {
    use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
    let saved = tcgetattr(tty).context("reading the terminal's settings")?;
    let mut quiet = saved.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    quiet.local_flags.insert(LocalFlags::ECHONL);
    // Echo goes off before the prompt appears, so nothing typed after it is echoed.
    tcsetattr(tty, SetArg::TCSAFLUSH, &quiet).context("turning terminal echo off")?;
    let _restore = EchoOff { tty, saved };
    let mut out = tty;
    out.write_all(question.as_bytes())
        .and_then(|()| out.flush())
        .context("writing the prompt")?;
    let mut line = Zeroizing::new(Vec::new());
    let mut byte = [0u8; 1];
    let mut input = tty;
    loop {
        match input.read(&mut byte) {
            Ok(0) => break,
            Ok(_) if byte[0] == b'\n' => break,
            Ok(_) => line.push(byte[0]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).context("reading the passphrase"),
        }
    }
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    let text = std::str::from_utf8(&line).context("the passphrase is not UTF-8")?;
    if text.is_empty() {
        bail!("no passphrase given");
    }
    Ok(Zeroizing::new(text.to_string()))
}

/// Where the root key comes from, as every store-opening command accepts it.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct RootKeyOpts {
    /// Unlock the store with the passphrase in this file (Argon2id) instead of the root
    /// key file. Also KMSFS_PASSPHRASE (the passphrase itself) for CI.
    #[arg(long, global = true, env = "KMSFS_PASSPHRASE_FILE")]
    pub passphrase_file: Option<PathBuf>,
    /// The root key file (default <store>/root.key).
    #[arg(long, global = true, env = "KMSFS_ROOT_KEY")]
    pub root_key_file: Option<PathBuf>,
}

impl RootKeyOpts {
    /// The root key source: `--passphrase-file`, else `KMSFS_PASSPHRASE`, else a prompt
    /// without echo (a passphrase store and a terminal), else the key file.
    pub fn source(&self, store: &Path) -> anyhow::Result<RootKeySource> {
        // Read (and scrubbed from the environment) whatever the source turns out to be,
        // so the variable never outlives this call in a daemon's /proc/PID/environ.
        let env = env_passphrase();
        if let Some(f) = &self.passphrase_file {
            let text = Zeroizing::new(
                std::fs::read_to_string(f)
                    .with_context(|| format!("--passphrase-file {}", f.display()))?,
            );
            let pass = Zeroizing::new(text.trim_end_matches(['\n', '\r']).to_string());
            if pass.is_empty() {
                bail!("--passphrase-file {}: the file is empty", f.display());
            }
            return Ok(RootKeySource::Passphrase(pass));
        }
        let wants_passphrase = crate::kms::store::Store::sealed_by_passphrase(store);
        let tty = if env.is_none() && wants_passphrase {
            terminal()
        } else {
            None
        };
        match choose(false, env.is_some(), wants_passphrase, tty.is_some()) {
            SecretSource::PassphraseEnv => {
                if let Some(p) = env {
                    return Ok(RootKeySource::Passphrase(p));
                }
            }
            SecretSource::Prompt => {
                if let Some(tty) = &tty {
                    let pass = prompt(
                        tty,
                        &format!("Passphrase of the kmsfs store {}: ", store.display()),
                    )?;
                    return Ok(RootKeySource::Passphrase(pass));
                }
            }
            SecretSource::PassphraseFile | SecretSource::KeyFile => {}
        }
        Ok(RootKeySource::KeyFile(
            self.root_key_file
                .clone()
                .unwrap_or_else(|| store.join("root.key")),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_source_is_file_then_environment_then_prompt_for_passphrase_stores_on_a_terminal() {
        use SecretSource::*;
        // (file, env, store wants a passphrase, terminal) → source
        let table = [
            ((true, true, true, true), PassphraseFile),
            ((true, false, false, false), PassphraseFile),
            ((false, true, true, true), PassphraseEnv),
            ((false, true, false, false), PassphraseEnv),
            ((false, false, true, true), Prompt),
            ((false, false, true, false), KeyFile),
            ((false, false, false, true), KeyFile),
            ((false, false, false, false), KeyFile),
        ];
        for ((file, env, wants, tty), want) in table {
            assert_eq!(
                choose(file, env, wants, tty),
                want,
                "file={file} env={env} wants={wants} tty={tty}"
            );
        }
    }
}
