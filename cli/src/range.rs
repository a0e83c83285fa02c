//! `folio range`: the keys of a range or prefix of a store, one per line as `key<TAB>value`
//! (keys and values shown safely, so neither holds a tab or a newline).

use std::io::Write;
use std::os::unix::ffi::OsStrExt;

use folio::{KeyRange, RangeOptions};

use crate::show::{at, bytes, count};
use crate::{CliResult, RangeArgs, open};

pub fn run(args: &RangeArgs, out: &mut dyn Write) -> CliResult {
    let path = args.db.as_path();
    let store = open::store(path, open::Access::Read)?;
    let range = match (&args.prefix, &args.start, &args.end) {
        (Some(p), _, _) => KeyRange::prefix(p.as_bytes()),
        (None, Some(s), Some(e)) => KeyRange::from(s.as_bytes()..e.as_bytes()),
        (None, Some(s), None) => KeyRange::from(s.as_bytes()..),
        (None, None, _) => KeyRange::all(),
    };
    let mut options = RangeOptions::at(args.rev.unwrap_or(0)).limit(args.limit);
    if args.keys_only {
        options = options.keys_only();
    }
    if args.count_only {
        options = options.count_only();
    }
    let r = store.range(range, options).map_err(at(path))?;
    if args.count_only {
        writeln!(out, "{}", r.count)?;
        return Ok(());
    }
    for kv in &r.kvs {
        if args.keys_only {
            writeln!(out, "{}", bytes(&kv.key))?;
        } else {
            writeln!(out, "{}\t{}", bytes(&kv.key), bytes(&kv.value))?;
        }
    }
    if r.more {
        out.flush()?;
        eprintln!(
            "({} of {} keys shown: raise --limit to see more)",
            count(r.kvs.len() as u64),
            count(r.count)
        );
    }
    Ok(())
}
