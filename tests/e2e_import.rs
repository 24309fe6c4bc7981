//! Imported key material end to end through the real binary, following AWS's documented
//! three steps (get-parameters-for-import, wrap, import-key-material), wrapping with
//! kmsfs's own `wrap-key-material` helper (AWS's RSAES_OAEP_SHA_256), then deleting the
//! material. tests/kms_import_aws.rs wraps with openssl instead.

use std::path::Path;
use std::process::{Command, Output};

fn kmsfs(store: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kmsfs"))
        .arg("--store")
        .arg(store)
        .args(args)
        .env_remove("KMSFS_SOCKET")
        .env("XDG_RUNTIME_DIR", store.join("no-runtime"))
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

#[test]
fn imported_material_can_be_wrapped_imported_used_and_deleted() {
    let dir = std::env::temp_dir().join(format!("kmsfs-import-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let store = dir.join("store");
    text(&kmsfs(&store, &["init"]));
    let key = text(&kmsfs(
        &store,
        &[
            "kms",
            "create-key",
            "--origin",
            "EXTERNAL",
            "--query",
            "KeyMetadata.KeyId",
            "--output",
            "text",
        ],
    ));
    let state = |store: &Path| {
        text(&kmsfs(
            store,
            &[
                "kms",
                "describe-key",
                "--key-id",
                &key,
                "--query",
                "KeyMetadata.KeyState",
                "--output",
                "text",
            ],
        ))
    };
    assert_eq!(state(&store), "PendingImport");

    let params = text(&kmsfs(
        &store,
        &[
            "kms",
            "get-parameters-for-import",
            "--key-id",
            &key,
            "--wrapping-algorithm",
            "RSAES_OAEP_SHA_256",
            "--wrapping-key-spec",
            "RSA_2048",
        ],
    ));
    let params: serde_json::Value = serde_json::from_str(&params).unwrap();
    let material = dir.join("material.bin");
    std::fs::write(&material, [7u8; 32]).unwrap();
    let wrapped = text(&kmsfs(
        &store,
        &[
            "kms",
            "wrap-key-material",
            "--public-key",
            params["PublicKey"].as_str().unwrap(),
            "--key-material",
            &format!("fileb://{}", material.display()),
            "--query",
            "EncryptedKeyMaterial",
            "--output",
            "text",
        ],
    ));
    let imported = kmsfs(
        &store,
        &[
            "kms",
            "import-key-material",
            "--key-id",
            &key,
            "--import-token",
            params["ImportToken"].as_str().unwrap(),
            "--encrypted-key-material",
            &wrapped,
            "--expiration-model",
            "KEY_MATERIAL_DOES_NOT_EXPIRE",
        ],
    );
    text(&imported);
    assert_eq!(state(&store), "Enabled");
    let blob = text(&kmsfs(
        &store,
        &[
            "kms",
            "encrypt",
            "--key-id",
            &key,
            "--plaintext",
            "aGVsbG8=",
            "--query",
            "CiphertextBlob",
            "--output",
            "text",
        ],
    ));
    let plain = text(&kmsfs(
        &store,
        &[
            "kms",
            "decrypt",
            "--ciphertext-blob",
            &blob,
            "--query",
            "Plaintext",
            "--output",
            "text",
        ],
    ));
    assert_eq!(plain, "aGVsbG8=");

    text(&kmsfs(
        &store,
        &["kms", "delete-imported-key-material", "--key-id", &key],
    ));
    assert_eq!(state(&store), "PendingImport");
    let refused = kmsfs(&store, &["kms", "decrypt", "--ciphertext-blob", &blob]);
    assert_eq!(refused.status.code(), Some(254));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("KMSInvalidStateException"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
