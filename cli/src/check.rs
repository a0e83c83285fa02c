//! `folio check`: the checker, with every problem listed and the exit code saying whether any was
//! found.

use std::io::Write;
use std::path::Path;

use crate::show::{at, count, counted};
use crate::{CliResult, Failure, open};

pub fn run(path: &Path, out: &mut dyn Write) -> CliResult {
    let db = open::db(path)?;
    let report = db.check().map_err(at(path))?;
    if report.is_clean() {
        writeln!(
            out,
            "{}: ok: commit {}, {} pages checked, no problems",
            path.display(),
            count(report.txid),
            count(report.pages_checked)
        )?;
        return Ok(());
    }
    writeln!(
        out,
        "{}: {} at commit {} ({} pages checked):",
        path.display(),
        counted(report.problems.len() as u64, "problem", "problems"),
        count(report.txid),
        count(report.pages_checked)
    )?;
    for p in &report.problems {
        writeln!(out, "  {p}")?;
    }
    Err(Failure::new(format!(
        "{}: check found {}",
        path.display(),
        counted(report.problems.len() as u64, "problem", "problems")
    )))
}
