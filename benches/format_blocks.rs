//! Single-core throughput of sealing and opening 4 KiB content blocks (the filesystem's
//! hot path): `cargo bench --bench format_blocks`. Throughput is reported in plaintext
//! bytes per second.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use kmsfs::crypto::DataKey;
use kmsfs::format::{ContentCipher, FileHeader, BLOCK_SIZE};

fn cipher() -> ContentCipher {
    let key = DataKey::from_bytes([7; 32]);
    let header = FileHeader::new([1; 16], "arn:aws:kms:local:1:key/k".into(), vec![1], &key)
        .expect("valid header");
    ContentCipher::new(&key, &header).expect("matching key")
}

fn blocks(c: &mut Criterion) {
    let cipher = cipher();
    let plain = vec![0x5Au8; BLOCK_SIZE];
    let mut sealed = Vec::with_capacity(BLOCK_SIZE + 28);
    let mut opened = Vec::with_capacity(BLOCK_SIZE);
    cipher.seal_block(0, &plain, &mut sealed).expect("seal");

    let mut group = c.benchmark_group("block_4k");
    group.throughput(Throughput::Bytes(BLOCK_SIZE as u64));
    group.bench_function("seal", |b| {
        let mut out = Vec::with_capacity(BLOCK_SIZE + 28);
        b.iter(|| cipher.seal_block(black_box(3), black_box(&plain), &mut out))
    });
    group.bench_function("open", |b| {
        b.iter(|| cipher.open_block(black_box(0), black_box(&sealed), &mut opened))
    });
    group.bench_function("seal_then_open", |b| {
        let mut out = Vec::with_capacity(BLOCK_SIZE + 28);
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
