//! `folio compact`: compact a store at a revision, or keep its last N revisions.

use std::io::Write;
use std::path::Path;

use folio::Store;

use crate::show::{at, count};
use crate::{CliResult, CompactArgs, open};

/// The store's record tree: one entry per stored revision.
const KEY_TREE: &[u8] = b"mvcc.key";

fn stored_revisions(store: &Store, path: &Path) -> CliResult<u64> {
    let tx = store.db().begin_read().map_err(at(path))?;
    Ok(tx.tree(KEY_TREE).map_err(at(path))?.map_or(0, |t| t.len()))
}

pub fn run(args: &CompactArgs, out: &mut dyn Write) -> CliResult {
    let path = args.db.as_path();
    let store = open::store(path, open::Access::Write)?;
    let current = store.current_revision();
    let compacted = store.compacted_revision();
    let rev = match (args.rev, args.keep) {
        (Some(rev), _) => rev,
        (None, Some(keep)) => {
            let rev = current.saturating_sub(i64::try_from(keep).unwrap_or(i64::MAX)) + 1;
            if rev <= compacted {
                writeln!(
                    out,
                    "nothing to compact: revisions {} to {} are readable, no more than the last {}",
                    count(compacted.max(1) as u64),
                    count(current as u64),
                    count(keep)
                )?;
                return Ok(());
            }
            rev
        }
        (None, None) => unreachable!("clap requires --rev or --keep"),
    };
    let before = stored_revisions(&store, path)?;
    store.compact(rev).map_err(at(path))?;
    let after = stored_revisions(&store, path)?;
    writeln!(
        out,
        "compacted at revision {}: reads below it now fail; stored revisions {} -> {} (current revision {})",
        count(rev as u64),
        count(before),
        count(after),
        count(current as u64)
    )?;
    Ok(())
}
