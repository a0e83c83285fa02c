//! Forged meta pages through the binary. What broke: a meta with a valid checksum and a forged page
//! count made `page_count * page_size` wrap, the length check pass, and `folio check` try to
//! allocate 2^62 entries and abort; a forged catalog length sized an allocation. Each forgery here
//! (both metas resealed with a correct crc32) is one clear line and exit code 1 from `folio check`
//! and `folio stats`, never an abort; a forgery of the newest meta alone falls back to the other.

use std::path::{Path, PathBuf};

use crate::common::{folio, open_db, temp_db};

const PAGE: usize = 4096;
const META_LEN: usize = 96;
const OFF_TXID: usize = 40;
const OFF_CATALOG: usize = 48;
const OFF_FREELIST: usize = 56;
const OFF_PAGE_COUNT: usize = 64;
const OFF_CATALOG_LEN: usize = 72;
const OFF_PROOF_LEN: usize = 80;

/// crc32 (IEEE), bit by bit: the few bytes of a meta page need nothing faster.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().unwrap())
}

/// A database of two commits, so that both meta slots hold its trees.
fn build(path: &Path) {
    let db = open_db(path);
    for round in 0..2u8 {
        let mut tx = db.begin_write().unwrap();
        tx.open_tree(b"t")
            .unwrap()
            .put(&[b'k', round], b"v")
            .unwrap();
        tx.commit().unwrap();
    }
}

/// A copy of `path` with `field` set to `value` in both metas, or in the newest only: the one
/// open takes (of two with one txid, as a clean close leaves them, the one without a proof).
fn forge(path: &Path, name: &str, field: usize, value: u64, both: bool) -> PathBuf {
    let mut bytes = std::fs::read(path).unwrap();
    let proof_len = |slot: usize| bytes[slot * PAGE + OFF_PROOF_LEN..][..4] != [0; 4];
    let newest = usize::from(
        (u64_at(&bytes, PAGE + OFF_TXID), proof_len(0)) > (u64_at(&bytes, OFF_TXID), proof_len(1)),
    );
    for slot in [0, 1] {
        if both || slot == newest {
            let meta = &mut bytes[slot * PAGE..slot * PAGE + META_LEN];
            meta[field..field + 8].copy_from_slice(&value.to_le_bytes());
            meta[16..20].fill(0);
            let crc = crc32(meta);
            meta[16..20].copy_from_slice(&crc.to_le_bytes());
        }
    }
    let out = path.with_file_name(name);
    std::fs::write(&out, bytes).unwrap();
    out
}

#[test]
fn forged_page_counts_catalog_lengths_and_roots_are_one_clear_line_from_check_and_stats() {
    let (_dir, path) = temp_db("good.folio");
    build(&path);
    let page_count = {
        let bytes = std::fs::read(&path).unwrap();
        u64_at(&bytes, OFF_PAGE_COUNT).max(u64_at(&bytes, PAGE + OFF_PAGE_COUNT))
    };
    let cases = [
        (
            "wraps",
            OFF_PAGE_COUNT,
            (1u64 << 52) + page_count,
            "page count",
        ),
        ("far", OFF_PAGE_COUNT, 1 << 40, "truncated"),
        ("catalog-len", OFF_CATALOG_LEN, u64::MAX, "catalog length"),
        ("catalog-root", OFF_CATALOG, page_count + 5, "out of range"),
        ("freelist-root", OFF_FREELIST, u64::MAX, "out of range"),
    ];
    for (name, field, value, says) in cases {
        let forged = forge(&path, name, field, value, true);
        for command in ["check", "stats"] {
            let run = folio([command, forged.to_str().unwrap()]);
            let line = run.fails();
            assert!(line.contains(says), "{name}, folio {command}: {line}");
        }
        let newest = forge(&path, &format!("{name}-newest"), field, value, false);
        let run = folio(["check", newest.to_str().unwrap()]);
        if says == "truncated" {
            // A meta that names pages the file lacks is a truncation, not a meta to skip.
            assert!(run.fails().contains(says), "{name}: {run:?}");
        } else {
            assert!(run.ok().contains("ok"), "{name}, newest meta only: {run:?}");
        }
    }
}
