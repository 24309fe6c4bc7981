//! AWS's import runbook, step for step, against the real binary: get-parameters-for-import,
//! PublicKey and ImportToken base64-decoded into files, key material from `openssl rand`,
//! wrapped by openssl exactly as AWS's guide shows (RSAES_OAEP_SHA_1/256 with
//! `pkeyutl`, RSA_AES_KEY_WRAP_SHA_1/256 with `pkeyutl` + `enc -id-aes256-wrap-pad`),
//! then import-key-material with `fileb://`. The expired token is in
//! kms_service.rs's `imported_material_lifecycle` (it needs the test clock).

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use support::cli::*;

/// Runs a shell script in `dir` (openssl's side of the runbook); asserts success.
#[track_caller]
fn sh(dir: &Path, script: &str) -> String {
    let o = Command::new("sh")
        .args(["-ec", script])
        .current_dir(dir)
        .output()
        .unwrap();
    ok(&o)
}

struct Runbook {
    served: Served,
}

impl Runbook {
    fn dir(&self) -> &Path {
        &self.served.dir
    }

    fn kms(&self, args: &[&str]) -> Output {
        let mut all = vec!["kms"];
        all.extend_from_slice(args);
        self.served.root(&all)
    }

    fn external_key(&self) -> String {
        ok(&self.kms(&[
            "create-key",
            "--origin",
            "EXTERNAL",
            "--query",
            "KeyMetadata.KeyId",
            "--output",
            "text",
        ]))
    }

    /// Step 1: download the public key and import token into `<tag>-PublicKey.bin` and
    /// `<tag>-ImportToken.bin`; returns the token's path.
    fn parameters(&self, key: &str, alg: &str, spec: &str, tag: &str) -> PathBuf {
        let p = json(&self.kms(&[
            "get-parameters-for-import",
            "--key-id",
            key,
            "--wrapping-algorithm",
            alg,
            "--wrapping-key-spec",
            spec,
            "--output",
            "json",
        ]));
        assert!(
            p["KeyId"]
                .as_str()
                .unwrap()
                .ends_with(&format!(":key/{key}")),
            "KeyId must be the key ARN: {p}"
        );
        assert!(p["ParametersValidTo"].is_string(), "{p}");
        std::fs::write(
            self.dir().join(format!("{tag}-PublicKey.bin")),
            b64(p["PublicKey"].as_str().unwrap()),
        )
        .unwrap();
        let token = self.dir().join(format!("{tag}-ImportToken.bin"));
        std::fs::write(&token, b64(p["ImportToken"].as_str().unwrap())).unwrap();
        // openssl reads the PublicKey as DER SubjectPublicKeyInfo of the asked size.
        let text = sh(
            self.dir(),
            &format!("openssl pkey -pubin -inform DER -in {tag}-PublicKey.bin -noout -text"),
        );
        let bits = spec.trim_start_matches("RSA_");
        assert!(text.contains(&format!("({bits} bit)")), "{text}");
        token
    }

    /// Step 2: wrap `material` under `<tag>-PublicKey.bin` with openssl as AWS's guide
    /// does; returns `<tag>-EncryptedKeyMaterial.bin`.
    fn wrap(&self, alg: &str, material: &str, tag: &str) -> PathBuf {
        self.wrap_as(alg, material, tag, tag)
    }

    /// [`Runbook::wrap`] into `<out_tag>-EncryptedKeyMaterial.bin`.
    fn wrap_as(&self, alg: &str, material: &str, tag: &str, out_tag: &str) -> PathBuf {
        let md = if alg.ends_with("SHA_1") {
            "sha1"
        } else {
            "sha256"
        };
        let oaep = format!(
            "-inkey {tag}-PublicKey.bin -keyform DER -pubin -pkeyopt rsa_padding_mode:oaep \
             -pkeyopt rsa_oaep_md:{md} -pkeyopt rsa_mgf1_md:{md}"
        );
        let out = format!("{out_tag}-EncryptedKeyMaterial.bin");
        let script = if alg.starts_with("RSAES_OAEP") {
            format!("openssl pkeyutl -encrypt -in {material} -out {out} {oaep}")
        } else {
            format!(
                "openssl rand -out {out_tag}-aes-key.bin 32\n\
                 openssl pkeyutl -encrypt -in {out_tag}-aes-key.bin -out {out_tag}-EncryptedAesKey.bin {oaep}\n\
                 openssl enc -id-aes256-wrap-pad -iv A65959A6 \
                   -K \"$(hexdump -v -e '/1 \"%02x\"' < {out_tag}-aes-key.bin)\" \
                   -in {material} -out {out_tag}-KeyMaterialWrapped.bin\n\
                 cat {out_tag}-EncryptedAesKey.bin {out_tag}-KeyMaterialWrapped.bin > {out}"
            )
        };
        sh(self.dir(), &script);
        self.dir().join(out)
    }

    /// Step 3: import-key-material with `fileb://` paths.
    fn import(&self, key: &str, wrapped: &Path, token: &Path) -> Output {
        self.kms(&[
            "import-key-material",
            "--key-id",
            key,
            "--encrypted-key-material",
            &format!("fileb://{}", wrapped.display()),
            "--import-token",
            &format!("fileb://{}", token.display()),
            "--expiration-model",
            "KEY_MATERIAL_DOES_NOT_EXPIRE",
        ])
    }

    fn decrypt(&self, blob: &str) -> Output {
        self.kms(&[
            "decrypt",
            "--ciphertext-blob",
            blob,
            "--query",
            "Plaintext",
            "--output",
            "text",
        ])
    }
}

#[test]
fn material_wrapped_by_openssl_per_aws_guide_imports_and_works() {
    let rb = Runbook {
        served: Served::init("import-aws"),
    };
    let key = rb.external_key();
    sh(rb.dir(), "openssl rand -out PlaintextKeyMaterial.bin 32");

    // The first import, then a ciphertext that every later import must open again:
    // reimports must bring the same bytes, so each algorithm below is proven to deliver
    // exactly the material openssl wrapped.
    let token = rb.parameters(&key, "RSAES_OAEP_SHA_256", "RSA_2048", "a");
    let wrapped = rb.wrap("RSAES_OAEP_SHA_256", "PlaintextKeyMaterial.bin", "a");
    ok(&rb.import(&key, &wrapped, &token));
    let blob = ok(&rb.kms(&[
        "encrypt",
        "--key-id",
        &key,
        "--plaintext",
        "aW1wb3J0ZWQ=",
        "--query",
        "CiphertextBlob",
        "--output",
        "text",
    ]));
    assert_eq!(ok(&rb.decrypt(&blob)), "aW1wb3J0ZWQ=");

    for (i, (alg, spec)) in [
        ("RSAES_OAEP_SHA_1", "RSA_3072"),
        ("RSA_AES_KEY_WRAP_SHA_256", "RSA_2048"),
        ("RSA_AES_KEY_WRAP_SHA_1", "RSA_2048"),
    ]
    .into_iter()
    .enumerate()
    {
        ok(&rb.kms(&["delete-imported-key-material", "--key-id", &key]));
        service_error(&rb.decrypt(&blob), "KMSInvalidStateException", "Decrypt");
        let tag = format!("r{i}");
        let token = rb.parameters(&key, alg, spec, &tag);
        let wrapped = rb.wrap(alg, "PlaintextKeyMaterial.bin", &tag);
        ok(&rb.import(&key, &wrapped, &token));
        assert_eq!(ok(&rb.decrypt(&blob)), "aW1wb3J0ZWQ=", "{alg} {spec}");
    }

    // kmsfs's own helper wraps as AWS does (RSAES_OAEP_SHA_256 by default).
    let token = rb.parameters(&key, "RSAES_OAEP_SHA_256", "RSA_2048", "h");
    let public = format!("fileb://{}", rb.dir().join("h-PublicKey.bin").display());
    let material = format!(
        "fileb://{}",
        rb.dir().join("PlaintextKeyMaterial.bin").display()
    );
    let wrapped = ok(&rb.kms(&[
        "wrap-key-material",
        "--public-key",
        &public,
        "--key-material",
        &material,
        "--query",
        "EncryptedKeyMaterial",
        "--output",
        "text",
    ]));
    let helper = rb.dir().join("h-EncryptedKeyMaterial.bin");
    std::fs::write(&helper, b64(&wrapped)).unwrap();
    ok(&rb.import(&key, &helper, &token));
}

#[test]
fn import_refuses_tampering_other_keys_tokens_other_material_and_pkcs1() {
    let rb = Runbook {
        served: Served::init("import-aws-neg"),
    };
    let key = rb.external_key();
    let other = rb.external_key();
    sh(
        rb.dir(),
        "openssl rand -out PlaintextKeyMaterial.bin 32\nopenssl rand -out Other.bin 32",
    );

    // AWS withdrew RSAES_PKCS1_V1_5 in 2023.
    service_error(
        &rb.kms(&[
            "get-parameters-for-import",
            "--key-id",
            &key,
            "--wrapping-algorithm",
            "RSAES_PKCS1_V1_5",
            "--wrapping-key-spec",
            "RSA_2048",
        ]),
        "UnsupportedOperationException",
        "GetParametersForImport",
    );

    let token = rb.parameters(&key, "RSA_AES_KEY_WRAP_SHA_256", "RSA_2048", "k");
    let wrapped = rb.wrap("RSA_AES_KEY_WRAP_SHA_256", "PlaintextKeyMaterial.bin", "k");

    // One flipped bit in the AES-KWP part, then in the RSA part.
    for at in [wrapped_len(&wrapped) - 3, 10] {
        let mut bytes = std::fs::read(&wrapped).unwrap();
        bytes[at] ^= 0x04;
        let bad = rb.dir().join(format!("tampered-{at}.bin"));
        std::fs::write(&bad, bytes).unwrap();
        service_error(
            &rb.import(&key, &bad, &token),
            "InvalidCiphertextException",
            "ImportKeyMaterial",
        );
    }
    // Wrapped for another algorithm than the token's (SHA-1 OAEP for a SHA-256 token).
    let sha1 = rb.wrap_as(
        "RSA_AES_KEY_WRAP_SHA_1",
        "PlaintextKeyMaterial.bin",
        "k",
        "k-sha1",
    );
    service_error(
        &rb.import(&key, &sha1, &token),
        "InvalidCiphertextException",
        "ImportKeyMaterial",
    );
    // Another key's token and public key.
    let other_token = rb.parameters(&other, "RSAES_OAEP_SHA_256", "RSA_2048", "o");
    let for_other = rb.wrap("RSAES_OAEP_SHA_256", "PlaintextKeyMaterial.bin", "o");
    service_error(
        &rb.import(&key, &for_other, &other_token),
        "InvalidImportTokenException",
        "ImportKeyMaterial",
    );
    // A damaged token.
    let mut t = std::fs::read(&token).unwrap();
    t[20] ^= 1;
    let bad_token = rb.dir().join("bad-token.bin");
    std::fs::write(&bad_token, t).unwrap();
    service_error(
        &rb.import(&key, &wrapped, &bad_token),
        "InvalidImportTokenException",
        "ImportKeyMaterial",
    );
    // Nothing of the above imported anything.
    let state = |k: &str| {
        ok(&rb.kms(&[
            "describe-key",
            "--key-id",
            k,
            "--query",
            "KeyMetadata.KeyState",
            "--output",
            "text",
        ]))
    };
    assert_eq!(state(&key), "PendingImport");

    ok(&rb.import(&key, &wrapped, &token));
    assert_eq!(state(&key), "Enabled");
    // The token stays good for its 24 hours, but a reimport must bring the same bytes.
    let different = rb.wrap_as("RSA_AES_KEY_WRAP_SHA_256", "Other.bin", "k", "k-other");
    service_error(
        &rb.import(&key, &different, &token),
        "IncorrectKeyMaterialException",
        "ImportKeyMaterial",
    );
    ok(&rb.import(&key, &wrapped, &token));
}

fn wrapped_len(p: &Path) -> usize {
    std::fs::metadata(p).unwrap().len() as usize
}
