//! Starts a three-member cluster on 127.0.0.1 ports 21001–21003 in one process, with its data in
//! a directory of its own (`./folio-raft-demo` unless named), writes through every member, reads
//! back through each, and prints each member's status. Run again, it restarts the same cluster
//! from its data dirs (`initialize` is only called the first time).
//!
//! ```text
//! cargo run -p folio-raft --example three_members [DATA_DIR] [--serve]
//! ```
//!
//! With `--serve` it keeps the members running until interrupted.

use std::time::Duration;

use folio_raft::{Command, Consistency, Node, NodeConfig};

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let serve = args.iter().any(|a| a == "--serve");
    let dir = args
        .iter()
        .find(|a| !a.starts_with("--"))
        .cloned()
        .unwrap_or_else(|| "folio-raft-demo".into());
    let fresh = !std::path::Path::new(&dir).exists();
    let mut members = Vec::new();
    for id in 1..=3u64 {
        let addr = format!("127.0.0.1:{}", 21000 + id).parse()?;
        let config = NodeConfig::new(id, addr, format!("{dir}/member-{id}"));
        members.push(Node::start(config).await?);
        println!("member {id} listening on {addr}");
    }
    if fresh {
        let all = members
            .iter()
            .map(|m| (m.id(), m.addr().to_string()))
            .collect();
        members[0].initialize(all).await?;
        println!("initialized a cluster of 3");
    }
    for m in &members {
        let key = format!("hello/from-{}", m.id()).into_bytes();
        let r = m
            .write(Command::Put {
                key,
                value: b"world".to_vec(),
                lease: 0,
            })
            .await?;
        println!("wrote through member {} at revision {}", m.id(), r.revision);
    }
    for m in &members {
        let r = m
            .read(b"hello/", b"hello0", Consistency::Linearizable)
            .await?;
        println!(
            "member {} reads {} keys at revision {}",
            m.id(),
            r.kvs.len(),
            r.revision
        );
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    for m in &members {
        println!("{:?}", m.status());
    }
    if serve {
        println!("serving; interrupt to stop");
        loop {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
    }
    for m in &members {
        m.shutdown().await?;
    }
    Ok(())
}
