//! Every operation kmsfs implements answers in the shape botocore's KMS model gives it:
//! tests/python/kms_model_check.py runs a scripted sequence of real calls through the
//! real binary (`kmsfs kms VERB --cli-input-json ... --debug`) and validates each wire
//! response against the model that PyPI's botocore (pinned in
//! scripts/python-requirements.txt) ships. The script fails if an operation listed here
//! has no sample call, so new operations must add one.

use std::path::{Path, PathBuf};
use std::process::Command;

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The pinned virtualenv (`scripts/python-env`, shared through KMSFS_PYENV).
fn python() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let o = Command::new(root.join("scripts/python-env"))
        .output()
        .expect("scripts/python-env runs");
    assert!(
        o.status.success(),
        "scripts/python-env failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let venv = String::from_utf8_lossy(&o.stdout).trim().to_string();
    Path::new(&venv).join("bin/python")
}

#[test]
fn every_operation_output_validates_against_botocores_kms_model() {
    let dir = TempDir(std::env::temp_dir().join(format!("kmsfs-model-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&dir.0);
    std::fs::create_dir_all(&dir.0).unwrap();
    let store = dir.0.join("store");
    let kmsfs = env!("CARGO_BIN_EXE_kmsfs");
    let init = Command::new(kmsfs)
        .arg("--store")
        .arg(&store)
        .arg("init")
        .output()
        .unwrap();
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    let ops: Vec<&str> = kmsfs::kms::operations::names().collect();
    assert!(ops.contains(&"GetParametersForImport"), "{ops:?}");
    let ops_file = dir.0.join("operations.txt");
    std::fs::write(&ops_file, ops.join("\n")).unwrap();

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/kms_model_check.py");
    let out = Command::new(python())
        .arg(script)
        .arg(kmsfs)
        .arg(&store)
        .arg(&dir.0)
        .arg(&ops_file)
        // The store opened directly, never a socket a developer may have running.
        .env_remove("KMSFS_SOCKET")
        .env("XDG_RUNTIME_DIR", dir.0.join("no-runtime"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("validated ") && stdout.contains("GetParametersForImport: ok"),
        "{stdout}"
    );
}
