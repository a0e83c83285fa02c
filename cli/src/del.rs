//! `folio del`: delete a key, a range or a prefix from a store.

use std::io::Write;
use std::os::unix::ffi::OsStrExt;

use folio::KeyRange;

use crate::show::{at, counted};
use crate::{CliResult, DelArgs, open};

pub fn run(args: &DelArgs, out: &mut dyn Write) -> CliResult {
    let path = args.db.as_path();
    let store = open::store(path, open::Access::Write)?;
    let key = args.key.as_bytes();
    let range = match (&args.end, args.prefix) {
        (_, true) => KeyRange::prefix(key),
        (Some(end), false) => KeyRange::from(key..end.as_bytes()),
        (None, false) => KeyRange::key(key),
    };
    let r = store.delete_range(range).map_err(at(path))?;
    writeln!(
        out,
        "deleted {}, revision {}",
        counted(r.deleted, "key", "keys"),
        r.revision
    )?;
    Ok(())
}
