//! Entry points of the fuzz targets in `fuzz/` and of the corpus replay test
//! (`tests/fuzz_corpus.rs`): one function per parser that reads bytes from outside the
//! process (the backing directory, the control socket, policy and principals files).
//! Not a stable API; it exists so that the fuzzer and `cargo test` run the very same
//! checks.
//!
//! Each target takes arbitrary bytes, runs the real parser and checks what must hold for
//! every input: no panic (the fuzzing engine sees one as a crash) and, where the module
//! also writes the format, decode → encode → decode gives the same value (and, for the
//! strict binary codecs, the same bytes). A broken property is returned as a
//! [`Violation`]; the callers turn it into a panic, so this module itself never panics.
//!
//! Keys are the fixed test values of `tests/fixtures/format-v1` (volume secret 32 × 0x11,
//! directory ids 16 × 0x21 and 16 × 0x22, data keys 32 × 0x42..=0x45), so the committed
//! fixture files are seeds that get past every MAC and commitment and reach the code
//! behind them.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::OnceLock;

use serde_json::Value;

use crate::control::protocol::{self, ResponseFrame, MAX_FRAME};
use crate::crypto::{self, DataKey, SealingKey};
use crate::format::{
    self, DirId, DirMeta, FileHeader, FormatError, SealedTarget, VolumeConfig, VolumeKeys,
    HEADER_LEN,
};
use crate::kms::ciphertext;
use crate::kms::request::{context_from, Req};
use crate::policy::{
    evaluate, EncryptionContext, IdentityPolicy, PolicyDocument, PolicyKind, Principal, Request,
    RequestContext,
};
use crate::principals::Principals;

/// A property a target checks did not hold for some input.
#[derive(Debug, thiserror::Error)]
#[error("fuzz target {target}: {message}")]
pub struct Violation {
    pub target: &'static str,
    pub message: String,
}

/// A fuzz target: arbitrary bytes in, `Err` when a property is broken.
pub type Target = fn(&[u8]) -> Result<(), Violation>;

/// Every target by name; `fuzz/fuzz_targets/<name>.rs` and `fuzz/corpus/<name>/` use the
/// same names.
pub const TARGETS: &[(&str, Target)] = &[
    ("envelope", envelope),
    ("ciphertext_blob", ciphertext_blob),
    ("names", names),
    ("symlink_xattr", symlink_xattr),
    ("dir_meta", dir_meta),
    ("volume_file", volume_file),
    ("control_frames", control_frames),
    ("control_request", control_request),
    ("policy", policy),
    ("principals", principals),
];

/// The target called `name`.
pub fn target(name: &str) -> Option<Target> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}

/// The fixture volume secret (tests/fixtures/format-v1/README.md).
pub const VOLUME_SECRET: [u8; 32] = [0x11; 32];
/// The fixture's root and `sub` directory ids.
pub const DIR_IDS: [[u8; 16]; 2] = [[0x21; 16], [0x22; 16]];
/// The fixture files' data keys.
pub const DATA_KEYS: [[u8; 32]; 4] = [[0x42; 32], [0x43; 32], [0x44; 32], [0x45; 32]];
/// Key material the `ciphertext_blob` target opens blobs with (the generated seeds are
/// sealed under it).
pub const BLOB_MATERIAL: [u8; 32] = [0x61; 32];
/// The encryption context of the store-v1 fixture's ciphertexts, also used for seeds.
pub const BLOB_CONTEXT: (&str, &str) = ("purpose", "fixture");

fn fail(target: &'static str, message: impl Into<String>) -> Result<(), Violation> {
    Err(Violation {
        target,
        message: message.into(),
    })
}

fn check(
    target: &'static str,
    ok: bool,
    message: impl FnOnce() -> String,
) -> Result<(), Violation> {
    if ok {
        Ok(())
    } else {
        fail(target, message())
    }
}

fn volume_keys() -> &'static VolumeKeys {
    static KEYS: OnceLock<VolumeKeys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let secret = SealingKey::from_bytes(VOLUME_SECRET);
        VolumeKeys::new(&secret)
    })
}

/// A whole regular file: the envelope header (strict decode, byte-exact re-encode), the
/// size arithmetic of its length, and, when one of the fixture data keys opens the
/// header's commitment, every content block (each one that opens is re-sealed and
/// opened again).
pub fn envelope(data: &[u8]) -> Result<(), Violation> {
    const T: &str = "envelope";
    let size = format::plaintext_size(data.len() as u64);
    if let Ok(size) = size {
        check(T, format::backing_len(size) == data.len() as u64, || {
            format!(
                "backing_len(plaintext_size({})) = {}",
                data.len(),
                format::backing_len(size)
            )
        })?;
    }
    let head = data.get(..HEADER_LEN).unwrap_or(data);
    let Ok(header) = FileHeader::decode(head) else {
        return Ok(());
    };
    let encoded = header.encode();
    check(T, encoded == head, || {
        "decode then encode changed the header bytes".into()
    })?;
    match FileHeader::decode(&encoded) {
        Ok(again) if again == header => {}
        other => return fail(T, format!("re-decoding the encoded header gave {other:?}")),
    }
    let Ok(size) = size else { return Ok(()) };
    for key in DATA_KEYS {
        let key = DataKey::from_bytes(key);
        let Ok(cipher) = format::ContentCipher::new(&key, &header) else {
            continue;
        };
        let mut plain = Vec::new();
        let mut resealed = Vec::new();
        let mut reopened = Vec::new();
        for index in 0..format::block_count(size) {
            let start = format::block_offset(index);
            let end = format::block_offset(index + 1).min(data.len() as u64);
            let (Ok(start), Ok(end)) = (usize::try_from(start), usize::try_from(end)) else {
                return fail(T, "block offsets do not fit in memory");
            };
            let Some(sealed) = data.get(start..end) else {
                return fail(
                    T,
                    format!("block {index} lies outside a {}-byte file", data.len()),
                );
            };
            if cipher.open_block(index, sealed, &mut plain).is_err() {
                continue;
            }
            check(T, format::sealed_len(plain.len()) == sealed.len(), || {
                format!(
                    "block {index}: {} bytes opened from {}",
                    plain.len(),
                    sealed.len()
                )
            })?;
            if cipher.seal_block(index, &plain, &mut resealed).is_err() {
                return fail(
                    T,
                    format!("block {index}: re-sealing an opened block failed"),
                );
            }
            match cipher.open_block(index, &resealed, &mut reopened) {
                Ok(()) if reopened == plain => {}
                other => {
                    return fail(
                        T,
                        format!("block {index}: re-sealed block opened as {other:?}"),
                    )
                }
            }
        }
        break;
    }
    Ok(())
}

/// A KMS ciphertext blob: parse, rebuild the header from the parsed fields (must give
/// the same bytes), and open it with [`BLOB_MATERIAL`] under the fixture context and
/// under none; what opens is sealed again and must open to the same plaintext.
pub fn ciphertext_blob(data: &[u8]) -> Result<(), Violation> {
    const T: &str = "ciphertext_blob";
    let Ok(blob) = ciphertext::parse(data) else {
        return Ok(());
    };
    match ciphertext::header(blob.key_id, blob.version) {
        Ok(h) => check(T, h[..] == *blob.header, || "rebuilt header differs".into())?,
        Err(e) => return fail(T, format!("a parsed key id is refused when building: {e}")),
    }
    check(T, [blob.header, blob.sealed].concat() == data, || {
        "header and sealed part do not make up the blob".into()
    })?;
    let key = blob_key(blob.key_id, blob.version);
    let with_context = EncryptionContext::from([(BLOB_CONTEXT.0.into(), BLOB_CONTEXT.1.into())]);
    for context in [with_context, EncryptionContext::new()] {
        let aad = ciphertext::aad(blob.header, &context);
        let Ok(plain) = crypto::open(&key, &aad, blob.sealed) else {
            continue;
        };
        let Ok(sealed) = crypto::seal(&key, &aad, &plain) else {
            return fail(T, "re-sealing an opened blob failed");
        };
        let again = [blob.header, &sealed].concat();
        let reparsed = ciphertext::parse(&again);
        let reopened = reparsed
            .as_ref()
            .ok()
            .and_then(|b| crypto::open(&key, &ciphertext::aad(b.header, &context), b.sealed).ok());
        check(
            T,
            reopened.as_ref().map(|p| &p[..]) == Some(&plain[..]),
            || format!("re-sealed blob did not open to the same plaintext ({reparsed:?})"),
        )?;
    }
    Ok(())
}

/// The per-version ciphertext key as the key service derives it, from [`BLOB_MATERIAL`].
pub fn blob_key(key_id: &str, version: u32) -> SealingKey {
    let mut salt = key_id.as_bytes().to_vec();
    salt.extend_from_slice(&version.to_be_bytes());
    crypto::hkdf_sealing_key(
        &SealingKey::from_bytes(BLOB_MATERIAL),
        &salt,
        ciphertext::CIPHERTEXT_KEY_INFO,
    )
}

/// Encrypted names and long-name sidecars. Input: `backing name [0x00 sidecar bytes]`
/// (a backing name never holds NUL). Decoding: in both fixture directories, a name that
/// decrypts must encrypt back to the same backing name (and sidecar). Encoding: the whole
/// input as a plaintext name must decrypt back to itself.
pub fn names(data: &[u8]) -> Result<(), Violation> {
    const T: &str = "names";
    let keys = volume_keys();
    let (name, sidecar) = match data.iter().position(|&b| b == 0) {
        Some(at) => (&data[..at], data.get(at + 1..)),
        None => (data, None),
    };
    if let Ok(name) = std::str::from_utf8(name) {
        let _ = format::classify(name);
        let _ = format::is_reserved(name);
        for dir in DIR_IDS.map(DirId) {
            let read = |_: &str| match sidecar {
                Some(bytes) => Ok(bytes.to_vec()),
                None => Err(std::io::ErrorKind::NotFound.into()),
            };
            let Ok(plain) = keys.names.decrypt(&dir, name, read) else {
                continue;
            };
            let again = match keys.names.encrypt(&dir, &plain) {
                Ok(again) => again,
                Err(e) => return fail(T, format!("a decrypted name does not encrypt: {e}")),
            };
            check(T, again.name() == name, || {
                format!("{name:?} decrypts, but encrypts back to {:?}", again.name())
            })?;
            if let Some((_, encoded)) = again.sidecar() {
                check(T, Some(encoded.as_bytes()) == sidecar, || {
                    format!("{name:?}: the sidecar does not round-trip")
                })?;
            }
        }
    }
    let dir = DirId(DIR_IDS[0]);
    if let Ok(backing) = keys.names.encrypt(&dir, data) {
        let sidecar = backing
            .sidecar()
            .map(|(_, encoded)| encoded.as_bytes().to_vec());
        let read = |_: &str| sidecar.ok_or_else(|| std::io::ErrorKind::NotFound.into());
        match keys.names.decrypt(&dir, backing.name(), read) {
            Ok(plain) if plain == data => {}
            other => return fail(T, format!("an encrypted name decrypted as {other:?}")),
        }
    }
    Ok(())
}

/// Sealed symlink targets and `user.*` xattr values: the input as a stored symlink
/// target and as a stored xattr value; what opens must seal and open to the same bytes.
pub fn symlink_xattr(data: &[u8]) -> Result<(), Violation> {
    const T: &str = "symlink_xattr";
    let keys = volume_keys();
    // The input as a backing symlink's own target (inline, or a stored-target name whose
    // file holds the input too), and as the raw bytes of a stored target.
    let stored = OsStr::from_bytes(data);
    let opened = keys
        .symlinks
        .open(stored, |_| Ok::<_, FormatError>(data.to_vec()))
        .ok()
        .into_iter()
        .chain(keys.symlinks.open_sealed(data).ok());
    for target in opened {
        let reopened = keys.symlinks.seal(&target).and_then(|sealed| match sealed {
            SealedTarget::Inline(s) => keys
                .symlinks
                .open(OsStr::new(&s), |_| Err(FormatError::SymlinkAuthentication)),
            SealedTarget::Stored { name, sealed } => keys
                .symlinks
                .open(OsStr::new(&name), |_| Ok::<_, FormatError>(sealed)),
        });
        check(T, reopened.as_deref().ok() == Some(&target[..]), || {
            "an opened symlink target does not round-trip".into()
        })?;
    }
    let name = OsStr::new("user.fuzz");
    if let Ok(value) = keys.xattrs.open(name, data) {
        let reopened = keys
            .xattrs
            .seal(name, &value)
            .and_then(|s| keys.xattrs.open(name, &s));
        check(T, reopened.as_deref().ok() == Some(&value[..]), || {
            "an opened xattr value does not round-trip".into()
        })?;
    }
    Ok(())
}

/// `kmsfs.dir`: TOML decode and MAC check under the fixture metadata key; what decodes
/// must encode and decode to the same metadata.
/// The same bytes as a directory id attribute beside a valid file, and as the file
/// beside a valid attribute, through `dirmeta::resolve`: a value that is not the
/// attribute's never overrides a valid file, and a rebuilt file is always the version-0
/// file of the attribute's id.
pub fn dir_meta(data: &[u8]) -> Result<(), Violation> {
    const T: &str = "dir_meta";
    let key = &volume_keys().metadata;
    let path = Path::new("kmsfs.dir");
    let id = DirId(DIR_IDS[0]);
    let file = DirMeta {
        dir_id: id,
        key_rule: None,
        version: 0,
    };
    match format::dirmeta::resolve(Some(&file.encode(key)), Some(data), path, key) {
        Ok(r) if r.meta == file && r.repair.is_none() => {}
        Err(FormatError::DirIdMismatch { .. }) if DirId::from_attr_value(data, key).is_some() => {}
        other => {
            return fail(
                T,
                format!("a valid file beside attribute {data:?}: {other:?}"),
            )
        }
    }
    match format::dirmeta::resolve(Some(data), Some(&id.attr_value(key)), path, key) {
        Ok(r) if r.repair.is_some() && r.meta != file => {
            return fail(T, format!("rebuilt {:?} from {data:?}", r.meta))
        }
        Ok(r) if r.repair.is_none() && r.meta.dir_id != id => {
            return fail(T, format!("{:?} accepted beside another id", r.meta))
        }
        _ => {}
    }
    let Ok(meta) = DirMeta::decode(data, path, key) else {
        return Ok(());
    };
    match DirMeta::decode(&meta.encode(key), path, key) {
        Ok(again) if again == meta => Ok(()),
        other => fail(T, format!("{meta:?} re-decoded as {other:?}")),
    }
}

/// `kmsfs.volume`: TOML decode, MAC check under the fixture metadata key; what decodes
/// must encode and decode to the same volume file (its MAC included).
pub fn volume_file(data: &[u8]) -> Result<(), Violation> {
    const T: &str = "volume_file";
    let key = &volume_keys().metadata;
    let path = Path::new("kmsfs.volume");
    let Ok(volume) = VolumeConfig::decode(data, path) else {
        return Ok(());
    };
    let verified = volume.verify(path, key).is_ok();
    let again = match VolumeConfig::decode(&volume.encode(), path) {
        Ok(again) if again == volume => again,
        other => return fail(T, format!("{volume:?} re-decoded as {other:?}")),
    };
    check(T, again.verify(path, key).is_ok() == verified, || {
        "the MAC check changed across a round trip".into()
    })
}

/// The control socket's byte stream: frames read one after another with the real size
/// limit; each body is written as a frame and read back unchanged, and goes through the
/// request target. Read again with a tiny limit, the stream must give exactly the
/// leading bodies that fit it (a limit only ever stops the stream earlier).
pub fn control_frames(data: &[u8]) -> Result<(), Violation> {
    const T: &str = "control_frames";
    const SMALL: usize = 64;
    let bodies = read_frames(T, data, MAX_FRAME)?;
    for body in &bodies {
        let mut wire = Vec::new();
        if protocol::write_frame(&mut wire, body).is_err() {
            return fail(T, "a frame that was read cannot be written");
        }
        match protocol::read_frame(&mut &wire[..], MAX_FRAME) {
            Ok(Some(again)) if again == *body => {}
            other => return fail(T, format!("a written frame read back as {other:?}")),
        }
        control_request(body)?;
    }
    // The small-limit bodies are a prefix of those above, already checked as requests:
    // comparing them is enough (checking them again made every input cost twice).
    let small = read_frames(T, data, SMALL)?;
    let fitting = bodies.iter().take_while(|b| b.len() <= SMALL).count();
    check(T, bodies.get(..fitting) == Some(&small[..]), || {
        format!(
            "a {SMALL}-byte limit read {} frames, not the {fitting} leading ones that fit",
            small.len()
        )
    })
}

/// Every frame of `data` up to the first that cannot be read under `max`.
fn read_frames(target: &'static str, data: &[u8], max: usize) -> Result<Vec<Vec<u8>>, Violation> {
    let mut stream = data;
    let mut bodies = Vec::new();
    // Bounded: every frame consumes at least its 4-byte length.
    while let Ok(Some(body)) = protocol::read_frame(&mut stream, max) {
        check(target, body.len() <= max, || {
            format!("a {}-byte frame passed a {max}-byte limit", body.len())
        })?;
        bodies.push(body);
    }
    Ok(bodies)
}

/// One request body: the protocol's parse, its refusals' shape, a serialize/parse round
/// trip of what it accepts, then the typed accessors the key service reads requests with
/// (ids, blobs, encryption contexts, grant tokens, pagination, times, policies).
pub fn control_request(data: &[u8]) -> Result<(), Violation> {
    const T: &str = "control_request";
    let frame = match protocol::parse_request(data) {
        Ok(frame) => frame,
        Err(ResponseFrame::Error(e)) => {
            return check(T, !e.kind.is_empty(), || {
                "a refusal without an error type".into()
            });
        }
        Err(ResponseFrame::Ok(_)) => return fail(T, "a refusal shaped as a success"),
    };
    let body = match serde_json::to_vec(&frame) {
        Ok(body) => body,
        Err(e) => return fail(T, format!("an accepted request does not serialize: {e}")),
    };
    match protocol::parse_request(&body) {
        Ok(again) if again == frame => {}
        other => return fail(T, format!("{frame:?} re-parsed as {other:?}")),
    }
    let Ok(req) = Req::new(&frame.request) else {
        return fail(T, "an accepted request is not an object");
    };
    read_request_fields(&req, 0);
    Ok(())
}

/// Reads every field the way the service's operations do; results are ignored (any
/// error is a fine answer), only panics matter.
fn read_request_fields(req: &Req<'_>, depth: u8) {
    for name in [
        "KeyId",
        "AliasName",
        "TargetKeyId",
        "GrantId",
        "GrantToken",
        "Description",
    ] {
        let _ = req.str_len(name, 2048);
    }
    for name in [
        "Plaintext",
        "CiphertextBlob",
        "EncryptedKeyMaterial",
        "ImportToken",
    ] {
        let _ = req.opt_blob(name);
    }
    for name in [
        "EncryptionContext",
        "SourceEncryptionContext",
        "EncryptionContextEquals",
    ] {
        let _ = req.opt_context(name);
    }
    for name in ["GrantTokens", "Operations", "TagKeys"] {
        let _ = req.opt_str_list(name);
    }
    let _ = crate::kms::ops_grants::check_grant_tokens(req);
    if let Ok(Some(token)) = req.opt_str("GrantToken") {
        let _ = crate::kms::ops_grants::parse_token(token);
    }
    let _ = req.page(1000, 100);
    let _ = req.opt_time("ValidTo");
    let _ = req.opt_int("NumberOfBytes", 1, 1024);
    let _ = req.opt_int("PendingWindowInDays", 7, 30);
    let _ = req.flag("DryRun");
    let _ = req.opt_array("Tags");
    if let Ok(Some(policy)) = req.opt_str("Policy") {
        let _ = PolicyDocument::parse(policy);
    }
    if depth < 2 {
        if let Ok(Some(inner)) = req.opt_obj("Constraints") {
            read_request_fields(&inner, depth + 1);
        }
    }
    if let Ok(Some(v)) = req.opt_obj("Request") {
        let _ = v.has("KeyId");
    }
    let _ = context_from("EncryptionContext", &Value::Null);
}

fn principal(arn: Option<&str>, account: &str) -> Principal {
    Principal {
        arn: arn.map(str::to_string),
        account: account.to_string(),
        uid: Some(1001),
        gid: Some(1001),
    }
}

/// Policy JSON: parsed as a key policy and as an identity policy; a document that parses
/// must parse again from its stored text to the same statements, and is evaluated for a
/// handful of fixed requests (user, account root, another account, anonymous; with and
/// without an encryption context and ViaService), as the key policy and as an identity
/// policy. `allows` must agree with `evaluate`.
pub fn policy(data: &[u8]) -> Result<(), Violation> {
    const T: &str = "policy";
    let Ok(text) = std::str::from_utf8(data) else {
        return Ok(());
    };
    const KEY: &str = "arn:aws:kms:local:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
    let principals = [
        principal(Some("arn:aws:iam::111122223333:user/alice"), "111122223333"),
        principal(Some("arn:aws:iam::111122223333:root"), "111122223333"),
        principal(
            Some("arn:aws:sts::444455556666:assumed-role/ci/job"),
            "444455556666",
        ),
        principal(None, ""),
    ];
    let context = EncryptionContext::from([
        (
            "kmsfs:volume".to_string(),
            "000102030405060708090a0b0c0d0e0f".to_string(),
        ),
        ("Department".to_string(), "IT".to_string()),
    ]);
    let mut via = RequestContext::new();
    via.set("kms:ViaService", "kmsfs");
    via.set_multi(
        "kms:GrantOperations",
        vec!["Decrypt".into(), "Encrypt".into()],
    );
    let plain = RequestContext::new();
    let allow_all = match PolicyDocument::parse(
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"*"},"Action":"kms:*","Resource":"*"}]}"#,
    ) {
        Ok(doc) => doc,
        Err(e) => return fail(T, format!("the fixed allow-all policy does not parse: {e}")),
    };
    for kind in [PolicyKind::KeyPolicy, PolicyKind::Identity] {
        let Ok(doc) = PolicyDocument::parse_kind(text, kind) else {
            continue;
        };
        match PolicyDocument::parse_kind(&doc.text, kind) {
            Ok(again) if again.sids() == doc.sids() && again.version() == doc.version() => {}
            other => return fail(T, format!("re-parsing the stored text gave {other:?}")),
        }
        let identity = [IdentityPolicy {
            name: "fuzz.json".into(),
            document: doc.clone(),
        }];
        for p in &principals {
            for (action, ctx, rc) in [
                ("kms:Decrypt", Some(&context), &via),
                ("kms:PutKeyPolicy", None, &plain),
                ("kms:CreateGrant", Some(&context), &via),
            ] {
                let req = Request {
                    principal: p,
                    action,
                    resource: KEY,
                    resource_account: "111122223333",
                    encryption_context: ctx,
                    context: rc,
                    now: 1_767_225_600,
                };
                let ev = if kind == PolicyKind::KeyPolicy {
                    let ev = evaluate(&req, &doc, &[], &[]);
                    check(T, doc.allows(&req, &[]) == ev.is_allowed(), || {
                        "allows() disagrees with evaluate()".into()
                    })?;
                    ev
                } else {
                    evaluate(&req, &allow_all, &identity, &[])
                };
                let _ = ev.to_simulate_json();
                for reason in &ev.matched {
                    let _ = reason.label();
                }
            }
        }
    }
    Ok(())
}

/// The identity policy every `policies = [...]` entry ending in `.json` reads as, in
/// the principals target (which never touches the filesystem).
const PRINCIPALS_POLICY: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"kms:Decrypt","Resource":"*"}]}"#;

/// Principals TOML (with identity policy files served from memory): every listed uid
/// must resolve to its own ARN, every listed ARN must be found by `by_arn`, and the ARN
/// parser must not panic on the input either.
pub fn principals(data: &[u8]) -> Result<(), Violation> {
    const T: &str = "principals";
    let Ok(text) = std::str::from_utf8(data) else {
        return Ok(());
    };
    let _ = crate::principals::parse_principal_arn(text);
    let mut read = |path: &Path| {
        if path.extension() == Some(OsStr::new("json")) {
            Ok(PRINCIPALS_POLICY.to_string())
        } else {
            Err(std::io::ErrorKind::NotFound.into())
        }
    };
    let Ok(parsed) = Principals::parse_with(text, "principals.toml", Path::new("/fuzz"), &mut read)
    else {
        return Ok(());
    };
    let _ = parsed.resolve(0, 0);
    let _ = parsed.resolve(u32::MAX, u32::MAX);
    let listed: Vec<(String, Vec<u32>, Vec<u32>)> = parsed
        .listed()
        .map(|(arn, uids, gids)| (arn.to_string(), uids.to_vec(), gids.to_vec()))
        .collect();
    for (arn, uids, gids) in &listed {
        for uid in uids {
            let got = parsed.resolve(*uid, u32::MAX).principal.arn;
            check(T, got.as_deref() == Some(arn.as_str()), || {
                format!("uid {uid} is listed for {arn} but resolves to {got:?}")
            })?;
        }
        for gid in gids {
            let _ = parsed.resolve(u32::MAX - 1, *gid);
        }
        match parsed.by_arn(arn) {
            Ok(r) if r.principal.arn.as_deref() == Some(arn.as_str()) => {}
            other => return fail(T, format!("listed {arn} is found by_arn as {other:?}")),
        }
    }
    Ok(())
}
