//! Replays every committed fuzz corpus file (`fuzz/corpus/<target>/*`) through the same
//! target functions the fuzzer runs (`kmsfs::fuzzing`), without a fuzzing engine, so a
//! regression on any input the fuzzer ever kept (seeds, coverage finds, fixed crashes)
//! fails the default test suite. `scripts/fuzz` does the fuzzing itself.
//!
//! The seeds (files named `seed-*`) come from real bytes: the format-v1 and store-v1
//! fixtures, the example policies and principals file in `config/`, the policies of
//! `tests/policy_cases/`, plus a few values sealed under the fuzzing module's fixed keys.
//! `KMSFS_WRITE_FUZZ_SEEDS=1 cargo test --test fuzz_corpus seeds_built` rewrites them;
//! files the fuzzer added are left alone.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use kmsfs::format::{SymlinkCipher, XattrCipher};
use kmsfs::fuzzing::{self, TARGETS};
use serde_json::{json, Value};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn corpus_dir(target: &str) -> PathBuf {
    root().join("fuzz/corpus").join(target)
}

/// Every target has a committed corpus, every corpus file passes its target, and no
/// corpus directory belongs to a target that no longer exists.
#[test]
fn every_committed_fuzz_input_passes_its_target() {
    let mut failures = Vec::new();
    let mut total = 0;
    for (name, target) in TARGETS {
        let dir = corpus_dir(name);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "{} holds no inputs", dir.display());
        for file in files {
            let data = std::fs::read(&file).unwrap();
            total += 1;
            // A panic inside the library is a failure of this input, not of the run:
            // report every failing file, not just the first.
            match std::panic::catch_unwind(|| target(&data)) {
                Ok(Ok(())) => {}
                Ok(Err(violation)) => failures.push(format!("{}: {violation}", file.display())),
                Err(_) => failures.push(format!("{}: panicked", file.display())),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {total} inputs failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    let known: BTreeSet<&str> = TARGETS.iter().map(|(n, _)| *n).collect();
    for entry in std::fs::read_dir(root().join("fuzz/corpus")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        assert!(
            known.contains(name.as_str()),
            "fuzz/corpus/{name} has no target"
        );
    }
    for (name, _) in TARGETS {
        let source = root().join("fuzz/fuzz_targets").join(format!("{name}.rs"));
        assert!(source.exists(), "{} is missing", source.display());
    }
}

/// The seeds reach past the first checks: a fixture that no longer decoded (or no
/// longer authenticated under the fuzzing keys) would leave the fuzzer probing only the
/// outer layer of each format.
#[test]
fn seeds_get_past_the_outer_checks() {
    use kmsfs::crypto::SealingKey;
    use kmsfs::format::{DirId, DirMeta, FileHeader, MetadataKey, NameCipher, VolumeConfig};
    let read = |target: &str, seed: &str| std::fs::read(corpus_dir(target).join(seed)).unwrap();
    let secret = SealingKey::from_bytes(fuzzing::VOLUME_SECRET);
    let key = MetadataKey::new(&secret);
    DirMeta::decode(
        &read("dir_meta", "seed-root-kmsfs.dir"),
        Path::new("d"),
        &key,
    )
    .unwrap();
    let volume =
        VolumeConfig::decode(&read("volume_file", "seed-kmsfs.volume"), Path::new("v")).unwrap();
    volume.verify(Path::new("v"), &key).unwrap();
    let hello = read("envelope", "seed-hello.txt");
    FileHeader::decode(&hello[..1024]).unwrap();
    let names = NameCipher::new(&secret);
    let name = String::from_utf8(read("names", "seed-hello.txt-name")).unwrap();
    assert_eq!(
        names
            .decrypt(&DirId(fuzzing::DIR_IDS[0]), &name, |_| Ok(Vec::new()))
            .unwrap(),
        b"hello.txt"
    );
    let blob = read("ciphertext_blob", "seed-sealed-with-context");
    let parsed = kmsfs::kms::ciphertext::parse(&blob).unwrap();
    let ctx = [(
        fuzzing::BLOB_CONTEXT.0.to_string(),
        fuzzing::BLOB_CONTEXT.1.to_string(),
    )]
    .into();
    let aad = kmsfs::kms::ciphertext::aad(parsed.header, &ctx);
    kmsfs::crypto::open(
        &fuzzing::blob_key(parsed.key_id, parsed.version),
        &aad,
        parsed.sealed,
    )
    .unwrap();
    let request = read("control_request", "seed-decrypt.json");
    kmsfs::control::protocol::parse_request(&request).unwrap();
    let policy = String::from_utf8(read("policy", "seed-config-key-user.json")).unwrap();
    kmsfs::policy::PolicyDocument::parse_identity(&policy).unwrap();
}

/// Builds the `seed-*` files from real bytes and checks that every one passes its target.
/// They go to a scratch directory, or, with `KMSFS_WRITE_FUZZ_SEEDS=1`, into
/// `fuzz/corpus` (see the module doc).
#[test]
fn seeds_built_from_real_bytes_pass_their_targets() {
    let scratch = tempfile::tempdir().unwrap();
    let out = if std::env::var_os("KMSFS_WRITE_FUZZ_SEEDS").is_some() {
        root().join("fuzz/corpus")
    } else {
        scratch.path().to_path_buf()
    };
    let written = std::cell::RefCell::new(Vec::<(String, PathBuf)>::new());
    let root = root();
    let fixture = root.join("tests/fixtures/format-v1/backing");
    let write = |target: &str, name: &str, bytes: &[u8]| {
        let dir = out.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join(format!("seed-{name}"));
        std::fs::write(&file, bytes).unwrap();
        written.borrow_mut().push((target.to_string(), file));
    };
    let copy =
        |target: &str, name: &str, from: &Path| write(target, name, &std::fs::read(from).unwrap());

    // Envelope: every regular file of the format-v1 fixture.
    let sub = fixture.join("FVJRMEbKoBHcWBbdU52_08K17V1IOmbKbdEAcGsWThA");
    copy(
        "envelope",
        "hello.txt",
        &fixture.join("qhklm3W9JMkfyh7-S07EqzFO-oXNH4iuzdhZJR7wbxg"),
    );
    copy(
        "envelope",
        "empty",
        &fixture.join("FGAqAohZJ_x5X-Lqj6wC1nMVBvAOSddK_E_5r7mcrUY"),
    );
    copy(
        "envelope",
        "long-name-file",
        &fixture.join("kmsfs.ln.xoDJ0nWJ85_mWxw0Zz7kdqmpGI9ByX7D9mkxKglpLrM"),
    );
    copy(
        "envelope",
        "sub-inner.txt",
        &sub.join("6DKmQo1IMHpvlDwttDpY1WSwiiLPD0bhYHeS_IAlYps"),
    );

    // Metadata files.
    copy("dir_meta", "root-kmsfs.dir", &fixture.join("kmsfs.dir"));
    copy("dir_meta", "sub-kmsfs.dir", &sub.join("kmsfs.dir"));
    copy("volume_file", "kmsfs.volume", &fixture.join("kmsfs.volume"));

    // Names: the fixture's backing names (long ones with their sidecar after a NUL), and
    // plaintext names for the encoding direction.
    write(
        "names",
        "hello.txt-name",
        b"qhklm3W9JMkfyh7-S07EqzFO-oXNH4iuzdhZJR7wbxg",
    );
    write(
        "names",
        "empty-name",
        b"FGAqAohZJ_x5X-Lqj6wC1nMVBvAOSddK_E_5r7mcrUY",
    );
    write(
        "names",
        "sub-name",
        b"FVJRMEbKoBHcWBbdU52_08K17V1IOmbKbdEAcGsWThA",
    );
    write(
        "names",
        "inner.txt-name",
        b"6DKmQo1IMHpvlDwttDpY1WSwiiLPD0bhYHeS_IAlYps",
    );
    let long = "kmsfs.ln.xoDJ0nWJ85_mWxw0Zz7kdqmpGI9ByX7D9mkxKglpLrM";
    let mut long_seed = long.as_bytes().to_vec();
    long_seed.push(0);
    long_seed.extend(std::fs::read(fixture.join(format!("{long}.name"))).unwrap());
    write("names", "long-name-with-sidecar", &long_seed);
    write("names", "plain-name", "résumé draft (2).txt".as_bytes());

    // Symlink targets and xattr values sealed under the fixture volume secret.
    let secret = kmsfs::crypto::SealingKey::from_bytes(fuzzing::VOLUME_SECRET);
    let target = SymlinkCipher::new(&secret)
        .seal(b"../projects/report.txt")
        .unwrap();
    let kmsfs::format::SealedTarget::Inline(target) = target else {
        panic!("a short target is stored inline");
    };
    write("symlink_xattr", "symlink-target", target.as_bytes());
    let value = XattrCipher::new(&secret)
        .seal(
            std::ffi::OsStr::new("user.fuzz"),
            b"text/plain; charset=utf-8",
        )
        .unwrap();
    write("symlink_xattr", "xattr-value", &value);

    // Ciphertext blobs: the store-v1 fixture's, and two sealed under the fuzzing material.
    let expected: Value = serde_json::from_slice(
        &std::fs::read(root.join("tests/fixtures/store-v1/expected.json")).unwrap(),
    )
    .unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    for (i, c) in expected["Ciphertexts"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
    {
        let blob = b64.decode(c["CiphertextBlob"].as_str().unwrap()).unwrap();
        write("ciphertext_blob", &format!("store-v1-{i}"), &blob);
    }
    let key_id = "97b8c248-b707-4147-9ee6-5d04762394bb";
    for (name, ctx) in [
        (
            "sealed-with-context",
            [(
                fuzzing::BLOB_CONTEXT.0.to_string(),
                fuzzing::BLOB_CONTEXT.1.to_string(),
            )]
            .into(),
        ),
        (
            "sealed-without-context",
            kmsfs::policy::EncryptionContext::new(),
        ),
    ] {
        let header = kmsfs::kms::ciphertext::header(key_id, 2).unwrap();
        let aad = kmsfs::kms::ciphertext::aad(&header, &ctx);
        let sealed = kmsfs::crypto::seal(&fuzzing::blob_key(key_id, 2), &aad, &[0x5a; 32]).unwrap();
        write("ciphertext_blob", name, &[&header[..], &sealed].concat());
    }

    // Control requests, alone and as one framed stream.
    let blob = expected["Ciphertexts"][0]["CiphertextBlob"].clone();
    let key_user =
        std::fs::read_to_string(root.join("config/policies/example-key-policy.json")).unwrap();
    let requests = [
        (
            "decrypt",
            json!({"Version":1,"Operation":"Decrypt","Request":{"CiphertextBlob":blob,"EncryptionContext":{"purpose":"fixture"},"GrantTokens":["dG9rZW4"]}}),
        ),
        (
            "encrypt",
            json!({"Version":1,"Operation":"Encrypt","Request":{"KeyId":"alias/kmsfs/default","Plaintext":"aGVsbG8=","EncryptionContext":{"kmsfs:volume":"000102030405060708090a0b0c0d0e0f"}}}),
        ),
        (
            "create-grant",
            json!({"Version":1,"Operation":"CreateGrant","Request":{"KeyId":key_id,"GranteePrincipal":"arn:aws:iam::111122223333:user/alice","Operations":["Decrypt","Encrypt"],"Constraints":{"EncryptionContextSubset":{"Department":"IT"}},"Name":"g"}}),
        ),
        (
            "put-key-policy",
            json!({"Version":1,"Operation":"PutKeyPolicy","Request":{"KeyId":key_id,"PolicyName":"default","Policy":key_user}}),
        ),
        (
            "list-keys",
            json!({"Version":1,"Operation":"ListKeys","Request":{"Limit":10,"Marker":"10"}}),
        ),
        (
            "schedule-deletion",
            json!({"Version":1,"Operation":"ScheduleKeyDeletion","Request":{"KeyId":key_id,"PendingWindowInDays":7}}),
        ),
        (
            "generate-random",
            json!({"Version":1,"Operation":"GenerateRandom","Request":{"NumberOfBytes":32}}),
        ),
        (
            "create-grant-valid-to",
            json!({"Version":1,"Operation":"CreateGrant","Request":{"KeyId":key_id,"ValidTo":"2030-01-01T00:00:00Z","DryRun":true}}),
        ),
    ];
    let mut stream = Vec::new();
    for (name, body) in &requests {
        let bytes = serde_json::to_vec(body).unwrap();
        write("control_request", &format!("{name}.json"), &bytes);
        kmsfs::control::protocol::write_frame(&mut stream, &bytes).unwrap();
    }
    write("control_frames", "request-stream", &stream);

    // Policies: the example policies, and every key and identity policy of the policy
    // corpus (deduplicated).
    for entry in std::fs::read_dir(root.join("config/policies")).unwrap() {
        let path = entry.unwrap().path();
        let stem = path.file_stem().unwrap().to_string_lossy().to_string();
        copy("policy", &format!("config-{stem}.json"), &path);
    }
    let mut seen = BTreeSet::new();
    let mut cases: Vec<PathBuf> = std::fs::read_dir(root.join("tests/policy_cases"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    cases.sort();
    for path in cases {
        let file: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let stem = path.file_stem().unwrap().to_string_lossy().to_string();
        let mut docs = Vec::new();
        let all = std::iter::once(&file["defaults"]).chain(file["cases"].as_array().unwrap());
        for case in all {
            if let Some(p) = case.get("key_policy") {
                docs.push(p.clone());
            }
            if let Some(Value::Object(ids)) = case.get("identity_policies") {
                docs.extend(ids.values().cloned());
            }
        }
        for doc in docs {
            let text = match doc {
                Value::String(s) => s,
                Value::Null => continue,
                other => serde_json::to_string_pretty(&other).unwrap(),
            };
            if seen.insert(text.clone()) {
                write(
                    "policy",
                    &format!("cases-{stem}-{}", seen.len()),
                    text.as_bytes(),
                );
            }
        }
    }

    // Principals: the example file, and a gid/inline-policy/other-account variant.
    copy(
        "principals",
        "config-principals.toml",
        &root.join("config/principals.toml"),
    );
    write(
        "principals",
        "inline-and-gids.toml",
        br#"account = "444455556666"
region = "eu-west-1"

[[principal]]
arn = "arn:aws:iam::444455556666:role/ops"
gids = [2000, 2001]
uids = [0, 1005]
policy = '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"kms:*","Resource":"*"}]}'

[[principal]]
arn = "arn:aws:sts::444455556666:assumed-role/ops/session"
uid = 1006
policies = ["p/ops.json"]
"#,
    );

    // Every seed passes the target it was made for.
    let written = written.into_inner();
    assert!(!written.is_empty());
    for (target, file) in &written {
        let run = TARGETS
            .iter()
            .find(|(n, _)| n == target)
            .unwrap_or_else(|| panic!("no fuzz target {target}"))
            .1;
        let data = std::fs::read(file).unwrap();
        if let Err(violation) = run(&data) {
            panic!("{}: {violation}", file.display());
        }
    }
}
