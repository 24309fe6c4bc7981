//! Single-core throughput of sealing and opening 4 KiB content blocks (the filesystem's
//! hot path): `cargo bench --bench format_blocks`. Throughput is reported in plaintext
//! bytes per second. `block_4k` is the version new files get (v2, XAES-256-GCM);
//! `block_4k_v1` the version-1 format (AES-256-GCM) that old files keep.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use kmsfs::crypto::DataKey;
use kmsfs::format::{ContentCipher, EnvelopeVersion, FileHeader, BLOCK_SIZE};

fn cipher(version: EnvelopeVersion) -> ContentCipher {
    let key = DataKey::from_bytes([7; 32]);
    let header = FileHeader::with_version(
        version,
        [1; 16],
        "arn:aws:kms:local:1:key/k".into(),
        vec![1],
        &key,
    )
    .expect("valid header");
    ContentCipher::new(&key, &header).expect("matching key")
}

fn blocks(c: &mut Criterion) {
    group(c, "block_4k", EnvelopeVersion::CURRENT);
    group(c, "block_4k_v1", EnvelopeVersion::V1);
}

fn group(c: &mut Criterion, name: &str, version: EnvelopeVersion) {
    let cipher = cipher(version);
    let plain = vec![0x5Au8; BLOCK_SIZE];
    let mut sealed = Vec::with_capacity(BLOCK_SIZE + 40);
    let mut opened = Vec::with_capacity(BLOCK_SIZE);
    cipher.seal_block(0, &plain, &mut sealed).expect("seal");

    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Bytes(BLOCK_SIZE as u64));
    group.bench_function("seal", |b| {
        let mut out = Vec::with_capacity(BLOCK_SIZE + 40);
        b.iter(|| cipher.seal_block(black_box(3), black_box(&plain), &mut out))
    });
    group.bench_function("open", |b| {
        b.iter(|| cipher.open_block(black_box(0), black_box(&sealed), &mut opened))
    });
    group.bench_function("seal_then_open", |b| {
        let mut out = Vec::with_capacity(BLOCK_SIZE + 40);
        b.iter(|| {
            cipher
                .seal_block(9, black_box(&plain), &mut out)
                .expect("seal");
            cipher.open_block(9, &out, &mut opened)
        })
    });
    group.finish();
}

criterion_group!(benches, blocks);
criterion_main!(benches);
