//! `folio dump`: a page or a tree, decoded, for debugging. Keys and values are shown safely.

use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use folio::{Db, LeafValue, PageBody, PageDump, PageMap, PageUse};

use crate::show::{self, at, bytes, bytes_cut, count, counted};
use crate::{CliResult, DumpArgs, Failure, open};

pub fn run(args: &DumpArgs, out: &mut dyn Write) -> CliResult {
    let path = args.db.as_path();
    let db = open::db(path)?;
    match (args.page, &args.tree) {
        (Some(page), _) => page_dump(&db, path, page, args.value_bytes, out),
        (None, Some(name)) => tree_dump(&db, path, name.as_bytes(), args.value_bytes, out),
        (None, None) => overview(&db, path, out),
    }
}

/// The two metas and the trees.
fn overview(db: &Db, path: &Path, out: &mut dyn Write) -> CliResult {
    let tx = db.begin_read().map_err(at(path))?;
    writeln!(
        out,
        "{}: commit {}, pages of {} bytes",
        path.display(),
        count(tx.txid()),
        db.page_size()
    )?;
    for slot in 0..2 {
        match db.dump_page(slot) {
            Ok(d) => print_body(&d, 0, out)?,
            Err(e) => writeln!(out, "page {slot}: meta, damaged: {}", show::error(&e))?,
        }
    }
    let names = tx.tree_names().map_err(at(path))?;
    writeln!(out, "{}:", counted(names.len() as u64, "tree", "trees"))?;
    for name in names {
        let len = tx.tree(&name).map_err(at(path))?.map_or(0, |t| t.len());
        writeln!(
            out,
            "  {}  {}",
            bytes(&name),
            counted(len, "entry", "entries")
        )?;
    }
    Ok(())
}

fn tree_dump(
    db: &Db,
    path: &Path,
    name: &[u8],
    value_bytes: usize,
    out: &mut dyn Write,
) -> CliResult {
    let tx = db.begin_read().map_err(at(path))?;
    let tree = match tx.tree(name) {
        Ok(Some(tree)) => tree,
        Ok(None) | Err(folio::Error::TreeNameLength { .. }) => {
            let names = tx.tree_names().map_err(at(path))?;
            let names: Vec<String> = names.iter().map(|n| bytes(n)).collect();
            return Err(Failure::not_found(format!(
                "{}: no tree named {:?} (the trees are: {})",
                path.display(),
                bytes(name),
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                }
            )));
        }
        Err(e) => return Err(at(path)(e)),
    };
    writeln!(
        out,
        "tree {}: {}",
        bytes(name),
        counted(tree.len(), "entry", "entries")
    )?;
    for entry in tree.iter() {
        let (key, value) = entry.map_err(at(path))?;
        writeln!(out, "{} = {}", bytes(key), bytes_cut(value, value_bytes))?;
    }
    Ok(())
}

fn page_dump(
    db: &Db,
    path: &Path,
    page: u64,
    value_bytes: usize,
    out: &mut dyn Write,
) -> CliResult {
    let map = db.page_map().map_err(at(path))?;
    let Some(run) = map.run_of(page).copied() else {
        return Err(Failure::new(format!(
            "{}: page {page} is past the end of the file (it has {} pages, 0 to {})",
            path.display(),
            count(map.file_pages()),
            count(map.file_pages().saturating_sub(1))
        )));
    };
    match run.page_use {
        PageUse::Unused => {
            writeln!(
                out,
                "page {page}: unused: past the allocation frontier (page {}), never written",
                count(map.page_count)
            )?;
            return Ok(());
        }
        PageUse::Free => {
            writeln!(
                out,
                "page {page}: free: it holds what an earlier commit left there"
            )?;
            match db.dump_page(page) {
                Ok(d) => print_body(&d, value_bytes, out)?,
                Err(e) => writeln!(out, "  (its bytes do not decode: {})", show::error(&e))?,
            }
            return Ok(());
        }
        _ => {}
    }
    match db.dump_page(page) {
        Ok(d) => print_body(&d, value_bytes, out),
        Err(e) => match run_start(db, &map, page, run.page_use) {
            Some(start) => {
                writeln!(
                    out,
                    "page {page}: {}: page {} of the run that starts at page {start} (dump that page for its header)",
                    run.page_use,
                    page - start + 1
                )?;
                Ok(())
            }
            None => Err(at(path)(e)),
        },
    }
}

/// For a page inside an overflow or freelist run (which has no header of its own), the run's
/// first page.
fn run_start(db: &Db, map: &PageMap, page: u64, page_use: PageUse) -> Option<u64> {
    if !matches!(page_use, PageUse::Overflow | PageUse::Freelist) {
        return None;
    }
    let first = map.run_of(page)?.start;
    (first..page).rev().find(|&p| match db.dump_page(p) {
        Ok(PageDump {
            body:
                PageBody::Overflow { pages }
                | PageBody::Freelist { pages, .. }
                | PageBody::FreelistDelta { pages, .. },
            ..
        }) => p + pages > page,
        _ => false,
    })
}

fn print_body(d: &PageDump, value_bytes: usize, out: &mut dyn Write) -> CliResult {
    let head = format!(
        "page {}: {}, checksum {:#010x} (valid)",
        d.id,
        d.kind.name(),
        d.checksum
    );
    match &d.body {
        PageBody::Meta(m) => {
            writeln!(
                out,
                "{head}{}: txid {}, format version {}, page size {}, {} pages, catalog root {} ({} trees), freelist {}{}",
                if m.current { ", the current meta" } else { "" },
                count(m.txid),
                m.version,
                m.page_size,
                count(m.page_count),
                m.catalog_root,
                m.catalog_len,
                m.freelist,
                match m.proof_runs {
                    0 => String::new(),
                    n => format!(
                        ", a proof of {} (counts only if they hold their checksums)",
                        counted(u64::from(n), "run", "runs")
                    ),
                }
            )?;
        }
        PageBody::Branch(entries) => {
            writeln!(
                out,
                "{head}, {}",
                counted(entries.len() as u64, "entry", "entries")
            )?;
            for (i, e) in entries.iter().enumerate() {
                writeln!(out, "{i:>5}  {} -> page {}", bytes(&e.key), e.child)?;
            }
        }
        PageBody::Leaf(entries) => {
            writeln!(
                out,
                "{head}, {}",
                counted(entries.len() as u64, "entry", "entries")
            )?;
            for (i, e) in entries.iter().enumerate() {
                let value = match &e.value {
                    LeafValue::Inline(v) => bytes_cut(v, value_bytes),
                    LeafValue::Overflow { page, len } => {
                        format!(
                            "({} bytes in the overflow run at page {page})",
                            count(*len as u64)
                        )
                    }
                };
                writeln!(out, "{i:>5}  {} = {value}", bytes(&e.key))?;
            }
        }
        PageBody::Overflow { pages } => {
            writeln!(
                out,
                "{head}, the first of a run of {} pages ({} to {}) holding one value",
                count(*pages),
                d.id,
                d.id + pages - 1
            )?;
        }
        PageBody::Freelist { pages, extents } => {
            let free: u64 = extents.iter().map(|(_, n)| n).sum();
            writeln!(
                out,
                "{head}, a run of {} page(s) listing {} extents, {} free pages",
                count(*pages),
                count(extents.len() as u64),
                count(free)
            )?;
            for (start, n) in extents {
                writeln!(
                    out,
                    "  pages {start} to {} ({})",
                    start + n - 1,
                    counted(*n, "page", "pages")
                )?;
            }
        }
        PageBody::FreelistDelta {
            pages,
            previous,
            depth,
            changes,
        } => {
            writeln!(
                out,
                "{head}, a run of {} page(s) holding one commit's {} changes to the freelist \
                 (delta {depth} after the full list, applied to page {previous})",
                count(*pages),
                count(changes.len() as u64),
            )?;
            for (start, n, taken) in changes {
                writeln!(
                    out,
                    "  {} pages {start} to {} ({})",
                    if *taken { "took" } else { "added" },
                    start + n - 1,
                    counted(*n, "page", "pages")
                )?;
            }
        }
    }
    Ok(())
}
