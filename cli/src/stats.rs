//! `folio stats`: what the file holds and what a defrag would give back.

use std::io::Write;
use std::path::Path;

use folio::{KeyRange, RangeOptions, Stats, Store, TreeStats};
use serde_json::json;

use crate::show::{self, at, count, counted, percent, size};
use crate::{CliResult, open};

/// A store's figures.
struct StoreStats {
    revision: i64,
    compacted: i64,
    keys: u64,
}

pub fn run(path: &Path, json: bool, out: &mut dyn Write) -> CliResult {
    let db = open::db(path)?;
    let (stats, store) = if db.holds_store().map_err(at(path))? {
        // Read-only, the store does not finish a compaction a crash interrupted: it reports the
        // scheduled revision as compacted, as a read-write open will once it has finished it.
        let store = Store::with_db(db).map_err(at(path))?;
        let keys = store
            .range(KeyRange::all(), RangeOptions::current().count_only())
            .map_err(at(path))?
            .count;
        let figures = StoreStats {
            revision: store.current_revision(),
            compacted: store.compacted_revision(),
            keys,
        };
        (store.db().stats().map_err(at(path))?, Some(figures))
    } else {
        (db.stats().map_err(at(path))?, None)
    };
    if json {
        print_json(path, &stats, store.as_ref(), out)
    } else {
        print_text(path, &stats, store.as_ref(), out)
    }
}

/// The catalog and every named tree, with the names shown safely.
fn trees(stats: &Stats) -> Vec<(String, &TreeStats)> {
    std::iter::once(("(catalog)".to_string(), &stats.catalog))
        .chain(stats.trees.iter().map(|t| (show::bytes(&t.name), t)))
        .collect()
}

fn print_text(
    path: &Path,
    s: &Stats,
    store: Option<&StoreStats>,
    out: &mut dyn Write,
) -> CliResult {
    let page = s.page_size as u64;
    writeln!(out, "file         {}", path.display())?;
    writeln!(
        out,
        "size         {}: {} pages of {}, commit {}",
        size(s.file_bytes),
        count(s.file_bytes / page),
        size(page),
        count(s.txid)
    )?;
    writeln!(
        out,
        "pages        meta {} · branch {} · leaf {} · overflow {} · freelist {} · free {} ({} pending) · unused {}",
        count(s.meta_pages),
        count(s.branch_pages),
        count(s.leaf_pages),
        count(s.overflow_pages),
        count(s.freelist_pages),
        count(s.free_pages),
        count(s.pending_pages),
        count(s.tail_pages)
    )?;
    writeln!(
        out,
        "live         {} ({}, {} of the file)",
        size(s.live_bytes()),
        counted(s.live_pages(), "page", "pages"),
        percent(s.live_bytes(), s.file_bytes)
    )?;
    writeln!(
        out,
        "free         {} ({}) in the freelist, {} ({}) unused at the end",
        size(s.free_pages * page),
        counted(s.free_pages, "page", "pages"),
        size(s.tail_pages * page),
        counted(s.tail_pages, "page", "pages")
    )?;
    writeln!(
        out,
        "reclaimable  {} ({} of the file): what a defrag gives back",
        size(s.reclaimable_bytes()),
        percent(s.reclaimable_bytes(), s.file_bytes)
    )?;
    writeln!(out)?;
    let rows: Vec<[String; 7]> = trees(s)
        .into_iter()
        .map(|(name, t)| {
            [
                name,
                count(t.len),
                t.depth.to_string(),
                count(t.branch_pages),
                count(t.leaf_pages),
                count(t.overflow_pages),
                format!("{:.0}%", t.fill(s.page_size) * 100.0),
            ]
        })
        .collect();
    let header = [
        "tree", "entries", "depth", "branch", "leaf", "overflow", "fill",
    ]
    .map(String::from);
    let widths: Vec<usize> = (0..7)
        .map(|c| {
            std::iter::once(&header)
                .chain(&rows)
                .map(|r| r[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in std::iter::once(&header).chain(&rows) {
        let mut line = format!("{:<w$}", row[0], w = widths[0]);
        for c in 1..7 {
            line.push_str(&format!("  {:>w$}", row[c], w = widths[c]));
        }
        writeln!(out, "{line}")?;
    }
    if let Some(st) = store {
        writeln!(out)?;
        // A store never compacted has compacted revision -1, as in etcd.
        let compacted = match u64::try_from(st.compacted) {
            Ok(rev) => format!("compacted at {}", count(rev)),
            Err(_) => "never compacted".to_string(),
        };
        writeln!(
            out,
            "store        revision {}, {compacted}, {}",
            count(st.revision as u64),
            counted(st.keys, "key", "keys")
        )?;
    }
    Ok(())
}

fn print_json(
    path: &Path,
    s: &Stats,
    store: Option<&StoreStats>,
    out: &mut dyn Write,
) -> CliResult {
    let page = s.page_size as u64;
    let trees: Vec<_> = trees(s)
        .into_iter()
        .skip(1)
        .map(|(name, t)| tree_json(name, t, s.page_size))
        .collect();
    let doc = json!({
        "file": path.display().to_string(),
        "file_bytes": s.file_bytes,
        "page_size": s.page_size,
        "txid": s.txid,
        "page_count": s.page_count,
        "pages": {
            "meta": s.meta_pages,
            "branch": s.branch_pages,
            "leaf": s.leaf_pages,
            "overflow": s.overflow_pages,
            "freelist": s.freelist_pages,
            "free": s.free_pages,
            "pending": s.pending_pages,
            "unused": s.tail_pages,
        },
        "live_bytes": s.live_bytes(),
        "free_bytes": s.free_pages * page,
        "unused_bytes": s.tail_pages * page,
        "reclaimable_bytes": s.reclaimable_bytes(),
        "reclaimable_ratio": if s.file_bytes == 0 { 0.0 } else {
            s.reclaimable_bytes() as f64 / s.file_bytes as f64
        },
        "catalog": tree_json(String::new(), &s.catalog, s.page_size),
        "trees": trees,
        "store": store.map(|st| json!({
            "revision": st.revision,
            "compacted_revision": st.compacted,
            "keys": st.keys,
        })),
    });
    serde_json::to_writer_pretty(&mut *out, &doc).map_err(std::io::Error::from)?;
    writeln!(out)?;
    Ok(())
}

fn tree_json(name: String, t: &TreeStats, page_size: u32) -> serde_json::Value {
    json!({
        "name": name,
        "entries": t.len,
        "depth": t.depth,
        "branch_pages": t.branch_pages,
        "leaf_pages": t.leaf_pages,
        "overflow_pages": t.overflow_pages,
        "used_bytes": t.used_bytes,
        "fill": t.fill(page_size),
    })
}
