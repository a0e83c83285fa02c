//! `folio defrag`: rewrite a closed database without free pages, with a progress bar, and report
//! the sizes and the speed.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use folio::{DefragOptions, DefragReport};
use indicatif::{ProgressBar, ProgressStyle};

use crate::show::{self, count, percent, size};
use crate::{CliResult, Failure, open};

pub fn run(path: &Path, fill: f64, out: &mut dyn Write) -> CliResult {
    open::require_file(path)?;
    // Drawn on stderr, and only when it is a terminal.
    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template(
            "defrag [{bar:40}] {percent:>3}% {pos}/{len} pages, {elapsed} elapsed, {eta} left",
        )
        .expect("a valid template")
        .progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    let shown = bar.clone();
    let options = DefragOptions::default().fill(fill).progress(move |p| {
        shown.set_length(p.pages_total);
        shown.set_position(p.pages_done);
    });
    let result = open::builder()
        .open_existing(path)
        .and_then(|db| db.defrag(&options));
    bar.finish_and_clear();
    let report = result.map_err(|e| match e {
        folio::Error::Locked => Failure::new(format!(
            "{}: {}; stop it first, or defragment from inside it with Db::defrag",
            path.display(),
            show::error(&e)
        )),
        e => show::at(path)(e),
    })?;
    print_report(path, &report, out)
}

/// The least a defrag must write for its seconds per GB to mean something: one of its 8 MiB
/// writes. Below it the fixed costs (two syncs, the rename, the directory sync) outweigh the copy,
/// and a file of a few pages would show thousands of seconds per GB.
pub const RATE_BYTES_MIN: u64 = 8 << 20;

/// The report of a defrag, as `folio defrag` and `folio bench` print it.
pub fn print_report(path: &Path, r: &DefragReport, out: &mut dyn Write) -> CliResult {
    let given_back = r.size_before.saturating_sub(r.size_after);
    writeln!(out, "defragmented {}", path.display())?;
    writeln!(
        out,
        "size    {} -> {} ({} given back, {} of the file)",
        size(r.size_before),
        size(r.size_after),
        size(given_back),
        percent(given_back, r.size_before)
    )?;
    writeln!(
        out,
        "wrote   {} pages ({}); the source held {} live",
        count(r.pages_written),
        size(r.bytes_written()),
        size(r.live_bytes)
    )?;
    if r.bytes_written() >= RATE_BYTES_MIN {
        writeln!(
            out,
            "time    {:.3} s, {:.2} s per GB written",
            r.duration.as_secs_f64(),
            r.seconds_per_gb()
        )?;
    } else {
        writeln!(
            out,
            "time    {:.3} s (no rate per GB: under {} written, the time is mostly syncs and the rename)",
            r.duration.as_secs_f64(),
            size(RATE_BYTES_MIN)
        )?;
    }
    if let Some(warm) = r.warm {
        // The new file is written around the page cache; this read it back in afterwards.
        writeln!(
            out,
            "cache   new file read into the page cache in {:.3} s",
            warm.as_secs_f64()
        )?;
    }
    Ok(())
}
