//! The threat: openraft caps an append-entries message by its number of entries only, and a
//! member that fell behind is sent up to 300 entries at once: 40 values of 1.5 MiB (about 80 MiB
//! as base64) in one message pass the 64 MiB gRPC limit, tonic refuses to send it, and the
//! member never catches up. The network layer must cut such a message under its byte cap and
//! let openraft send the rest next.

mod support;

use std::time::Duration;

use folio::RangeOptions;
use folio_raft::{Command, NodeConfig};
use support::Cluster;

fn defaults(_: &mut NodeConfig) {}

const VALUES: usize = 40;
const VALUE_LEN: usize = 1536 << 10;

fn value(i: usize) -> Vec<u8> {
    (0..VALUE_LEN).map(|j| (i * 7 + j * 13) as u8).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn entries_larger_together_than_a_grpc_message_reach_a_member_that_fell_behind() {
    let mut c = Cluster::start(3, defaults).await;
    let leader = c.leader().await;
    let behind = c.running().into_iter().find(|id| *id != leader).unwrap();
    c.kill(behind).await;

    for i in 0..VALUES {
        let r = c
            .node(leader)
            .write(Command::Put {
                key: format!("big/{i:02}").into_bytes(),
                value: value(i),
                lease: 0,
            })
            .await
            .unwrap();
        assert!(r.error.is_none(), "{r:?}");
    }
    let total = VALUES * VALUE_LEN;
    assert!(total * 4 / 3 > 64 << 20, "the entries fit one message");

    c.restart(behind).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    c.settle().await;
    for id in c.running() {
        let store = c.node(id).store();
        for i in 0..VALUES {
            let r = store
                .range(format!("big/{i:02}").as_bytes(), RangeOptions::current())
                .unwrap();
            assert_eq!(r.kvs.len(), 1, "member {id} lacks big/{i:02}");
            assert!(
                r.kvs[0].value == value(i),
                "member {id}: big/{i:02} differs"
            );
        }
    }
    c.assert_same_stores();
    c.stop_all().await;
}
