//! The first program to run: create a database, write in transactions, read a snapshot while the
//! writer goes on, range over keys, and run the checker.
//!
//! `cargo run --release --example quickstart [path]`

use std::error::Error;

use folio::Db;

fn main() -> Result<(), Box<dyn Error>> {
    let dir = tempfile::tempdir()?;
    let path = std::env::args()
        .nth(1)
        .map(Into::into)
        .unwrap_or_else(|| dir.path().join("quickstart.folio"));
    let db = Db::open(&path)?;
    println!(
        "opened {} (page size {} bytes)",
        path.display(),
        db.page_size()
    );

    // Write: one transaction, two trees. Nothing is visible to readers until commit returns.
    let mut tx = db.begin_write()?;
    {
        let mut pods = tx.open_tree(b"pods")?;
        for i in 0..10_000u32 {
            let key = format!("/registry/pods/default/pod-{i:05}");
            pods.put(
                key.as_bytes(),
                format!("{{\"phase\":\"Running\",\"n\":{i}}}").as_bytes(),
            )?;
        }
    }
    tx.open_tree(b"config")?
        .put(b"cluster-name", b"folio-demo")?;
    tx.commit()?;
    println!("committed 10,000 pods and 1 config key");

    // A reader takes a snapshot. The writer below does not wait for it, and it does not see the
    // writer's changes.
    let snapshot = db.begin_read()?;
    let mut tx = db.begin_write()?;
    {
        let mut pods = tx.open_tree(b"pods")?;
        for i in (0..10_000u32).step_by(2) {
            pods.delete(format!("/registry/pods/default/pod-{i:05}").as_bytes())?;
        }
    }
    tx.commit()?;
    let old = snapshot.tree(b"pods")?.expect("pods exists");
    let now_tx = db.begin_read()?;
    let now = now_tx.tree(b"pods")?.expect("pods exists");
    println!(
        "the old snapshot still sees {} pods; a new one sees {}",
        old.len(),
        now.len()
    );
    drop(snapshot);

    // Range scans borrow straight from the memory map, forwards or backwards.
    let first: Vec<String> = now
        .range(b"/registry/pods/default/pod-00100".as_slice()..)?
        .take(3)
        .map(|e| e.map(|(k, _)| String::from_utf8_lossy(k).into_owned()))
        .collect::<Result<_, _>>()?;
    println!("three pods from pod-00100: {first:?}");
    if let Some((k, v)) = now.iter().next_back().transpose()? {
        println!(
            "last pod: {} = {}",
            String::from_utf8_lossy(k),
            String::from_utf8_lossy(v)
        );
    }
    drop(now_tx);

    let report = db.check()?;
    println!("check: {report}");
    let stats = db.stats()?;
    println!(
        "file {} KiB: {} leaf, {} branch, {} free pages; pods tree depth {}, fill {:.0}%",
        stats.file_bytes / 1024,
        stats.leaf_pages,
        stats.branch_pages,
        stats.free_pages,
        stats
            .trees
            .iter()
            .find(|t| t.name == b"pods")
            .map_or(0, |t| t.depth),
        100.0
            * stats
                .trees
                .iter()
                .find(|t| t.name == b"pods")
                .map_or(0.0, |t| t.fill(stats.page_size)),
    );
    Ok(())
}
