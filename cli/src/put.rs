//! `folio put`: write one key of a store; with `--create`, the only subcommand that creates a file.

use std::io::{IsTerminal, Read, Write};
use std::os::unix::ffi::OsStrExt;

use crate::open::Access;
use crate::show::at;
use crate::{CliResult, Failure, PutArgs, open};

pub fn run(args: &PutArgs, out: &mut dyn Write) -> CliResult {
    let path = args.db.as_path();
    // A mistyped argument order (`folio put key db value`) must not make a new store named like
    // a key: only `--create` makes one.
    if !args.create && std::fs::symlink_metadata(path).is_err() {
        return Err(Failure::new(format!(
            "no database at {}; pass --create to make one",
            path.display()
        )));
    }
    if !args.create {
        // Before any typing: a file that cannot be the store fails now, not after the value.
        open::require_file(path)?;
    }
    let value = match &args.value {
        Some(v) => v.as_bytes().to_vec(),
        None => {
            let stdin = std::io::stdin();
            if stdin.is_terminal() {
                // Without this, a forgotten value looks like a hang.
                eprintln!(
                    "folio put: reading the value from the terminal until Ctrl-D (or give it after the key)"
                );
            }
            let mut v = Vec::new();
            stdin.lock().read_to_end(&mut v)?;
            v
        }
    };
    let access = if args.create {
        Access::Create
    } else {
        Access::Write
    };
    let store = open::store(path, access)?;
    let rev = store.put(args.key.as_bytes(), &value).map_err(at(path))?;
    writeln!(out, "revision {rev}")?;
    Ok(())
}
