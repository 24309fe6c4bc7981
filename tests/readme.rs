//! The README, run as written. Each ```sh block preceded by `<!-- test: NAME -->` runs as
//! the person it is written for, line by line under `sh -e`, so a line that fails fails
//! the test; a line ending in `# prints: TEXT` must succeed and print TEXT, one ending in
//! `# fails: TEXT` must fail and print TEXT.
//!
//! - `desktop`: a fresh account (useradd, home in /home) without root, store in
//!   ~/.local/share/kmsfs, mounting through fusermount3 with /dev/fuse at 0666 as
//!   Debian's fuse3 package sets it;
//! - `shared-machine` then `key-users`: root with `sudo`, the store in /var/lib/kmsfs,
//!   in this checkout (the blocks use `config/`), with alice and bob created by the block;
//! - `ci`: a non-root job without a terminal, `KMSFS_PASSPHRASE` set as a CI secret would
//!   be, in a fresh job directory.
//!
//! Each scenario runs in its own mount and pid namespace (`unshare`): /etc, /var/lib,
//! /home, /run and /usr/local/bin are private overlays, /srv and /mnt empty tmpfs, and
//! /dev/fuse a private 0666 node, so the machine's users, stores, sockets and device are
//! untouched; the users the blocks create vanish with the namespace. When the namespace's
//! first process exits (or the test dies: `--kill-child`), the kernel kills every process
//! in it and tears down its mounts, FUSE mounts included, so nothing outlives a failure.
//!
//! The one line not run: installing kmsfs (`cargo install ...`, `sudo scripts/install`)
//! takes minutes, so it is skipped, and the kmsfs this test was built with is put at
//! /usr/local/bin/kmsfs (where `scripts/install` puts it, and on sudo's secure_path).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

const KMSFS: &str = env!("CARGO_BIN_EXE_kmsfs");
const README: &str = include_str!("../README.md");

/// A marked ```sh block: its name and its lines with their README line numbers.
struct Block {
    name: String,
    lines: Vec<(usize, String)>,
}

fn marked_blocks() -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut lines = README.lines().enumerate().map(|(i, l)| (i + 1, l));
    while let Some((n, line)) = lines.next() {
        let Some(name) = line
            .trim()
            .strip_prefix("<!-- test:")
            .and_then(|r| r.strip_suffix("-->"))
        else {
            continue;
        };
        let fence = lines.next().map(|(_, l)| l.trim());
        assert_eq!(
            fence,
            Some("```sh"),
            "README line {n}: a test marker must sit right above a ```sh block"
        );
        let body = lines
            .by_ref()
            .take_while(|(_, l)| l.trim() != "```")
            .map(|(i, l)| (i, l.to_string()))
            .collect();
        blocks.push(Block {
            name: name.trim().to_string(),
            lines: body,
        });
    }
    blocks
}

fn blocks_named(name: &str) -> Vec<Block> {
    let found: Vec<Block> = marked_blocks()
        .into_iter()
        .filter(|b| b.name == name)
        .collect();
    assert!(
        !found.is_empty(),
        "README has no block marked `test: {name}`"
    );
    found
}

#[derive(Debug, PartialEq)]
enum Expect {
    Prints,
    Fails,
}

/// One command of a block: continuation lines joined, its expectation split off.
#[derive(Debug)]
struct Step {
    line: usize,
    command: String,
    expect: Option<(Expect, String)>,
}

fn steps(block: &Block) -> Vec<Step> {
    let mut out = Vec::new();
    let mut pending: Option<(usize, String)> = None;
    for (n, raw) in &block.lines {
        let (first, mut text) = match pending.take() {
            Some((first, so_far)) => (first, so_far + "\n" + raw),
            None => (*n, raw.clone()),
        };
        if text.ends_with('\\') {
            pending = Some((first, text));
            continue;
        }
        let mut expect = None;
        for (marker, kind) in [
            (" # prints: ", Expect::Prints),
            (" # fails: ", Expect::Fails),
        ] {
            if let Some(at) = text.find(marker) {
                expect = Some((kind, text[at + marker.len()..].trim().to_string()));
                text.truncate(at);
                break;
            }
        }
        out.push(Step {
            line: first,
            command: text.trim_end().to_string(),
            expect,
        });
    }
    assert!(pending.is_none(), "a block ends in a continuation line");
    out
}

/// Installing kmsfs is the one thing a test cannot afford (see the module doc).
fn is_install(command: &str) -> bool {
    let c = command.trim_start();
    c.starts_with("cargo install ") || c.starts_with("sudo scripts/install")
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A POSIX sh script (run with `sh -e`) that runs `blocks` and checks each expectation.
fn script(blocks: &[Block]) -> String {
    let mut s = String::from(
        "__check() { # kind status output text line\n\
         case \"$3\" in *\"$4\"*) ;; *) echo \"README line $5: expected output with '$4'\" >&2; exit 1;; esac\n\
         if [ \"$1\" = prints ] && [ \"$2\" -ne 0 ]; then echo \"README line $5: exit $2\" >&2; exit 1; fi\n\
         if [ \"$1\" = fails ] && [ \"$2\" -eq 0 ]; then echo \"README line $5: succeeded, should fail\" >&2; exit 1; fi\n\
         }\n",
    );
    for block in blocks {
        for step in steps(block) {
            let skipped = if is_install(&step.command) {
                " (skipped)"
            } else {
                ""
            };
            let trace = format!("README:{}{skipped}: {}", step.line, step.command.trim());
            s += &format!("printf '%s\\n' {} >&2\n", quote(&trace));
            if !skipped.is_empty() {
                continue;
            }
            match &step.expect {
                None => s += &format!("{}\n", step.command),
                Some((kind, text)) => {
                    let kind = if *kind == Expect::Prints {
                        "prints"
                    } else {
                        "fails"
                    };
                    s += &format!(
                        "if __out=$( {{ {}\n}} 2>&1 ); then __st=0; else __st=$?; fi\n\
                         printf '%s\\n' \"$__out\"\n\
                         __check {kind} \"$__st\" \"$__out\" {} {}\n",
                        step.command,
                        quote(text),
                        step.line
                    );
                }
            }
        }
    }
    s
}

/// Sets up the private machine layout (see the module doc); `$S` is the namespace's
/// scratch tmpfs, `$T` the host directory holding the scripts.
fn prelude(dir: &Path) -> String {
    format!(
        r#"set -e
T={dir}
S=$T/ns
mount -t tmpfs -o size=256m,mode=755 tmpfs "$S"
for d in /etc /var/lib /home /run /usr/local/bin; do
  n=$(printf '%s' "$d" | tr / _)
  mkdir -p "$S/up$n" "$S/work$n"
  mount -t overlay overlay -o "lowerdir=$d,upperdir=$S/up$n,workdir=$S/work$n" "$d"
done
# A fresh machine: no store, no socket, no kmsfs but this test's.
rm -rf /var/lib/kmsfs /run/kmsfs /run/user/*
for d in /srv /mnt; do mount -t tmpfs -o mode=755 tmpfs "$d"; done
# Bound, not copied: the debug binary (with the AWS SDK) outgrows the scratch tmpfs.
install -m 0755 /dev/null /usr/local/bin/kmsfs
mount --bind {kmsfs} /usr/local/bin/kmsfs
mknod -m 0666 "$S/fuse" c 10 229
mount --bind "$S/fuse" /dev/fuse
# As a login would: $HOME, $USER and a 0700 $XDG_RUNTIME_DIR; no terminal.
run_as() {{ # user cwd script [VAR=value...]
  u=$1; cwd=$2; script=$3; shift 3
  uid=$(id -u "$u")
  install -d -m 0700 -o "$u" -g "$u" "/run/user/$uid"
  (cd "$cwd" && setsid -w setpriv --reuid "$u" --regid "$u" --init-groups \
     env -i HOME="/home/$u" USER="$u" LOGNAME="$u" SHELL=/bin/sh \
     PATH=/usr/local/bin:/usr/bin:/bin XDG_RUNTIME_DIR="/run/user/$uid" "$@" \
     sh -e "$script" < /dev/null)
}}
# kmsfs mount points; the host's own (copied into this namespace) are not ours.
kmsfs_mounts() {{
  grep ' fuse.kmsfs \| - fuse kmsfs ' /proc/self/mountinfo | cut -d' ' -f5 | sort || true
}}
kmsfs_mounts > "$S/host-mounts"
no_kmsfs_mounts() {{
  kmsfs_mounts > "$S/mounts"
  if ! cmp -s "$S/host-mounts" "$S/mounts"; then
    echo "a kmsfs mount is left:" >&2; diff "$S/host-mounts" "$S/mounts" >&2; exit 1
  fi
}}
"#,
        dir = dir.display(),
        kmsfs = KMSFS,
    )
}

/// A host directory for one scenario's scripts, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("kmsfs-readme-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("ns")).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        Scratch(dir)
    }

    /// Writes a script every user may read.
    fn script(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        p
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // The namespace's mounts died with it; what is left is the host directory.
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `driver` as root in a fresh mount and pid namespace, with a clean environment;
/// asserts it ran to its end.
fn run_in_namespace(scratch: &Scratch, driver: &str) {
    for tool in [
        "unshare",
        "setpriv",
        "setsid",
        "useradd",
        "sudo",
        "fusermount3",
    ] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .unwrap();
        assert!(
            found.status.success(),
            "{tool} is missing (scripts/install-deps installs what the tests need)"
        );
    }
    assert!(
        Path::new("/dev/fuse").exists(),
        "/dev/fuse is missing: FUSE tests need it"
    );
    let path = scratch.script(
        "driver.sh",
        &format!(
            "{}{driver}\nno_kmsfs_mounts\necho README-SCENARIO-DONE\n",
            prelude(&scratch.0)
        ),
    );
    let out = Command::new("unshare")
        .args([
            "--mount",
            "--pid",
            "--fork",
            "--kill-child",
            "--mount-proc",
            "--propagation",
            "private",
            "sh",
        ])
        .arg(&path)
        .env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .env("HOME", "/root")
        .env("LANG", "C")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("README-SCENARIO-DONE"),
        "exit {:?}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status.code()
    );
}

#[test]
fn readme_quick_start_works_for_a_desktop_user_without_root() {
    let blocks = blocks_named("desktop");
    let scratch = Scratch::new("desktop");
    let block = scratch.script("desktop.sh", &script(&blocks));
    let user = "kmsfs-desktop";
    run_in_namespace(
        &scratch,
        &format!(
            r#"useradd --create-home {user}
run_as {user} /home/{user} {block}
# What the block promised: the user's own store, and only envelopes on disk.
[ "$(stat -c %U /home/{user}/.local/share/kmsfs)" = {user} ]
test -f /home/{user}/.local/share/kmsfs/root.key
if mountpoint -q /home/{user}/secret; then echo "still mounted" >&2; exit 1; fi
if ls /home/{user}/secret.enc | grep note; then echo "a plaintext name on disk" >&2; exit 1; fi
if grep -rq hello /home/{user}/secret.enc; then echo "plaintext on disk" >&2; exit 1; fi
"#,
            block = block.display()
        ),
    );
}

#[test]
fn readme_shared_machine_maps_a_key_user_and_a_key_administrator() {
    let mut blocks = blocks_named("shared-machine");
    blocks.extend(blocks_named("key-users"));
    // The promises this test exists for must stay in the README.
    let all: Vec<Step> = blocks.iter().flat_map(steps).collect();
    assert!(
        all.iter()
            .any(|s| s.command.starts_with("sudo -u alice cat")
                && matches!(&s.expect, Some((Expect::Prints, _)))),
        "the README no longer shows alice reading"
    );
    assert!(
        all.iter().any(|s| s.command.starts_with("sudo -u bob cat")
            && s.expect == Some((Expect::Fails, "Permission denied".into()))),
        "the README no longer shows bob refused"
    );
    let scratch = Scratch::new("shared");
    let block = scratch.script("shared.sh", &script(&blocks));
    run_in_namespace(
        &scratch,
        &format!(
            r#"sh -e {block}
if mountpoint -q /mnt/team; then echo "still mounted" >&2; exit 1; fi
if grep -rq "Q3 numbers" /srv/team.enc; then echo "plaintext on disk" >&2; exit 1; fi
# bob's refusal is the key service's decision, audited as such.
kmsfs audit --decision denied --event-name Decrypt --principal bob > "$S/denied"
grep -q 'user/bob' "$S/denied"
"#,
            block = block.display()
        ),
    );
}

#[test]
fn readme_ci_block_works_without_a_terminal() {
    let blocks = blocks_named("ci");
    let scratch = Scratch::new("ci");
    let block = scratch.script("ci.sh", &script(&blocks));
    let user = "kmsfs-ci";
    run_in_namespace(
        &scratch,
        &format!(
            r#"useradd --create-home {user}
install -d -o {user} -g {user} /home/{user}/job
run_as {user} /home/{user}/job {block} KMSFS_PASSPHRASE=readme-ci-secret
# Sealed by the passphrase: no root key file in the store.
test -d /home/{user}/job/.kmsfs-store
test ! -e /home/{user}/job/.kmsfs-store/root.key
"#,
            block = block.display()
        ),
    );
}

#[test]
fn steps_join_continuations_and_split_expectations() {
    let block = Block {
        name: "x".into(),
        lines: vec![
            (1, "a \\".into()),
            (2, "  b   # prints: it's fine".into()),
            (3, "c # fails: Permission denied".into()),
            (4, "cargo install --path .  # note".into()),
        ],
    };
    let s = steps(&block);
    assert_eq!(s.len(), 3);
    assert_eq!((s[0].line, s[0].command.as_str()), (1, "a \\\n  b"));
    assert_eq!(s[0].expect, Some((Expect::Prints, "it's fine".into())));
    assert_eq!(
        s[1].expect,
        Some((Expect::Fails, "Permission denied".into()))
    );
    assert!(is_install(&s[2].command));
    assert!(!script(&[block]).contains("\ncargo install"));
}
