//! Holds `docs/format.md` and the code's constants together: the tables in the document must give
//! the same offsets and sizes as the code.

use crate::limits::{
    BRANCH_ENTRY_HEADER_LEN, LEAF_ENTRY_HEADER_LEN, META_LEN, OVERFLOW_REF_LEN, PAGE_HEADER_LEN,
};
use crate::page_file::page::{OFF_COUNT, OFF_CRC, OFF_ID, OFF_KIND, OFF_OVERFLOW};

const FORMAT: &str = include_str!("../../docs/format.md");

/// The (offset, size) rows of the table marked `<!-- table: name -->`.
fn table(name: &str) -> Vec<(String, String)> {
    let marker = format!("<!-- table: {name} -->");
    let start = FORMAT
        .find(&marker)
        .unwrap_or_else(|| panic!("docs/format.md has no table {name}"));
    FORMAT[start + marker.len()..]
        .lines()
        .skip_while(|l| l.trim().is_empty())
        .take_while(|l| l.starts_with('|'))
        .skip(2)
        .map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            (cells[1].to_string(), cells[2].to_string())
        })
        .collect()
}

fn row(offset: usize, size: usize) -> (String, String) {
    (offset.to_string(), size.to_string())
}

#[test]
fn the_page_header_table_matches_the_code() {
    let want = vec![
        row(OFF_ID, 8),
        row(OFF_KIND, 1),
        row(9, 1),
        row(OFF_COUNT, 2),
        row(OFF_OVERFLOW, 4),
        row(OFF_CRC, 4),
        row(20, 4),
    ];
    assert_eq!(table("page_header"), want);
    assert_eq!(OFF_CRC + 4 + 4, PAGE_HEADER_LEN);
}

#[test]
fn the_meta_table_matches_the_code() {
    let t = table("meta");
    assert_eq!(t[0], row(0, PAGE_HEADER_LEN));
    // The checksummed part ends where the proof begins.
    let (proof_row, fixed) = t.split_last().expect("rows");
    let last = fixed.last().expect("rows");
    let end: usize = last.0.parse::<usize>().unwrap() + last.1.parse::<usize>().unwrap();
    assert_eq!(end, META_LEN);
    assert_eq!(proof_row.0, META_LEN.to_string());
    assert_eq!(
        proof_row.1,
        format!("{} × proof length", crate::page_file::meta::PROOF_ENTRY_LEN)
    );
    let meta = crate::page_file::meta::Meta {
        page_size: 512,
        txid: 0x0102,
        catalog_root: 3,
        catalog_len: 5,
        freelist: 4,
        page_count: 9,
    };
    let page = meta.encode(0);
    let field = |name: &str| -> usize {
        t.iter()
            .zip(table_names("meta"))
            .find(|(_, n)| n.contains(name))
            .map(|(r, _)| r.0.parse().unwrap())
            .unwrap()
    };
    assert_eq!(
        &page[field("magic")..field("magic") + 8],
        crate::page_file::meta::MAGIC
    );
    assert_eq!(page[field("txid")], 0x02);
    assert_eq!(page[field("catalog root")], 3);
    assert_eq!(page[field("freelist page")], 4);
    assert_eq!(page[field("page count")], 9);
    assert_eq!(page[field("catalog entry count")], 5);
    assert_eq!(
        u32::from_le_bytes(page[field("page size in bytes")..][..4].try_into().unwrap()),
        512
    );
    let runs = [
        crate::page_file::meta::Proven {
            page: 0x0506,
            pages: 3,
            crc: 0xaabb_ccdd,
        },
        crate::page_file::meta::Proven {
            page: 7,
            pages: 1,
            crc: 1,
        },
    ];
    let page = meta.encode_proven(1, &runs);
    let u32_at = |at: usize| u32::from_le_bytes(page[at..at + 4].try_into().unwrap());
    assert_eq!(u32_at(field("proof length")), 2);
    let proof = &page[field("per run")..][..32];
    assert_eq!(u32_at(field("proof checksum")), crc32fast::hash(proof));
    assert_eq!(&proof[..8], &0x0506u64.to_le_bytes());
    assert_eq!(&proof[8..12], &3u32.to_le_bytes());
    assert_eq!(&proof[12..16], &0xaabb_ccddu32.to_le_bytes());
    assert_eq!(&proof[16..24], &7u64.to_le_bytes());
    assert!(page[field("per run") + 32..].iter().all(|&b| b == 0));
}

fn table_names(name: &str) -> Vec<String> {
    let marker = format!("<!-- table: {name} -->");
    let start = FORMAT.find(&marker).unwrap();
    FORMAT[start + marker.len()..]
        .lines()
        .skip_while(|l| l.trim().is_empty())
        .take_while(|l| l.starts_with('|'))
        .skip(2)
        .map(|l| l.split('|').nth(3).unwrap().trim().to_string())
        .collect()
}

#[test]
fn the_entry_tables_match_the_code() {
    let leaf = table("leaf_entry");
    assert_eq!(leaf[..3], [row(0, 1), row(1, 2), row(3, 4)]);
    assert_eq!(leaf[3].0, LEAF_ENTRY_HEADER_LEN.to_string());
    assert!(leaf[4].1.ends_with(&OVERFLOW_REF_LEN.to_string()));
    let branch = table("branch_entry");
    assert_eq!(branch[..2], [row(0, 8), row(8, 2)]);
    assert_eq!(branch[2].0, BRANCH_ENTRY_HEADER_LEN.to_string());
    assert_eq!(table("descriptor"), vec![row(0, 8), row(8, 8)]);
    assert_eq!(
        table("freelist")[..2],
        [row(0, PAGE_HEADER_LEN), row(PAGE_HEADER_LEN, 8)]
    );
}

#[test]
fn the_freelist_delta_table_matches_the_code() {
    use crate::page_file::freelist::Change;
    use crate::page_file::freelist::chain::{decode_delta, encode_delta};
    let t = table("freelist_delta");
    let offset = |i: usize| -> usize { t[i].0.parse().unwrap() };
    assert_eq!(t[0], row(0, PAGE_HEADER_LEN));
    let mut buf = vec![0u8; 512];
    encode_delta(&[Change::Took(9, 2)], 7, 3, 4, &mut buf, 1);
    let at = |off: usize| u64::from_le_bytes(buf[off..off + 8].try_into().unwrap());
    assert_eq!(at(offset(1)), 7, "previous");
    assert_eq!(at(offset(2)), 3, "depth");
    assert_eq!(at(offset(3)), 1, "change count");
    assert_eq!(at(offset(4)), 9, "first page");
    assert_eq!(at(offset(4) + 8), 2 | 1 << 63, "length with the taken bit");
    assert_eq!(
        decode_delta(&buf, 4, 20).unwrap().changes,
        vec![(9, 2, true)]
    );
    assert!(
        FORMAT.contains(&format!("1 to {}", crate::limits::FREELIST_DELTAS_MAX)),
        "the deltas' depth bound"
    );
}
