//! `folio get`: one key of a store, at the current revision or an older one.

use std::io::Write;
use std::os::unix::ffi::OsStrExt;

use folio::{KeyRange, RangeOptions};

use crate::show::{at, bytes};
use crate::{CliResult, Failure, GetArgs, open};

pub fn run(args: &GetArgs, out: &mut dyn Write) -> CliResult {
    let path = args.db.as_path();
    let store = open::store(path, open::Access::Read)?;
    let key = args.key.as_bytes();
    let r = store
        .range(KeyRange::key(key), RangeOptions::at(args.rev.unwrap_or(0)))
        .map_err(at(path))?;
    let Some(kv) = r.kvs.first() else {
        return Err(Failure::not_found(format!(
            "{}: key {:?} not found at revision {}",
            path.display(),
            bytes(key),
            args.rev.unwrap_or(r.revision)
        )));
    };
    if args.raw {
        out.write_all(&kv.value)?;
    } else {
        writeln!(out, "{}", bytes(&kv.value))?;
    }
    Ok(())
}
