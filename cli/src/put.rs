//! `folio put`: write one key of a store; the only subcommand that creates a file.

use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;

use crate::show::at;
use crate::{CliResult, PutArgs, open};

pub fn run(args: &PutArgs, out: &mut dyn Write) -> CliResult {
    let path = args.db.as_path();
    let value = match &args.value {
        Some(v) => v.as_bytes().to_vec(),
        None => {
            let mut v = Vec::new();
            std::io::stdin().read_to_end(&mut v)?;
            v
        }
    };
    let store = open::store(path, true)?;
    let rev = store.put(args.key.as_bytes(), &value).map_err(at(path))?;
    writeln!(out, "revision {rev}")?;
    Ok(())
}
