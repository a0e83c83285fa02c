//! The store as the state machine: each entry's log id is committed in the same store commit as
//! the entry's writes, so after a reopen (what a crash leaves) the applied state names exactly
//! the last entry whose writes the store holds: openraft then replays the entries after it, none
//! twice and none skipped. An entry the store refuses, or one that writes nothing, still counts
//! as applied, with the same answer on every member.

use std::collections::{BTreeMap, BTreeSet};

use folio_raft::{
    Command, CompareSpec, CompareTarget, OpSpec, Peer, Relation, StateMachine, TypeConfig,
};
use openraft::storage::RaftStateMachine;
use openraft::{Entry, EntryPayload, Membership};

#[path = "support/entries.rs"]
mod entries;
use entries::{entry, put};

fn txn(index: u64, compare_value: &str, success: Vec<OpSpec>) -> Entry<TypeConfig> {
    entry(
        index,
        EntryPayload::Normal(Command::Txn {
            compares: vec![CompareSpec {
                key: b"a".to_vec(),
                target: CompareTarget::Value,
                relation: Relation::Equal,
                value: compare_value.as_bytes().to_vec(),
                number: 0,
                range_end: Vec::new(),
            }],
            success,
            failure: vec![OpSpec::Range {
                key: b"a".to_vec(),
                range_end: Vec::new(),
                options: Default::default(),
            }],
        }),
    )
}

fn put_op(key: &str) -> OpSpec {
    OpSpec::Put {
        key: key.as_bytes().to_vec(),
        value: b"t".to_vec(),
        lease: 0,
        prev_kv: false,
    }
}

#[tokio::test]
async fn the_applied_log_id_is_committed_with_each_entry_and_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let members: BTreeMap<u64, Peer> = (1..=3)
        .map(|id| {
            (
                id,
                Peer {
                    addr: format!("127.0.0.1:{}", 21000 + id),
                },
            )
        })
        .collect();
    let membership = Membership::new(
        vec![members.keys().copied().collect::<BTreeSet<_>>()],
        members,
    );
    {
        let mut sm = StateMachine::open(dir.path()).unwrap();
        assert_eq!(sm.applied_state().await.unwrap().0, None);
        let answers = sm
            .apply(vec![
                entry(1, EntryPayload::Blank),
                entry(2, EntryPayload::Membership(membership.clone())),
                put(3, "a", "1"),
                put(4, "a", "2"),
                // The compare fails: the else branch only reads.
                txn(5, "1", vec![put_op("b")]),
                // Refused by the store (a key put twice in one branch), on every member alike.
                txn(6, "2", vec![put_op("c"), put_op("c")]),
            ])
            .await
            .unwrap();
        let revisions: Vec<i64> = answers.iter().map(|r| r.revision).collect();
        assert_eq!(revisions, [1, 1, 2, 3, 3, 3]);
        assert!(!answers[4].succeeded);
        assert!(
            answers[5].error.as_deref().is_some_and(|e| e.contains("c")),
            "{:?}",
            answers[5]
        );
        let (applied, stored) = sm.applied_state().await.unwrap();
        assert_eq!(applied.map(|l| l.index), Some(6));
        assert_eq!(stored.membership(), &membership);
    }
    // Reopened, as after a crash: the applied state and the store agree.
    let mut sm = StateMachine::open(dir.path()).unwrap();
    let (applied, stored) = sm.applied_state().await.unwrap();
    assert_eq!(applied.map(|l| l.index), Some(6));
    assert_eq!(stored.log_id().map(|l| l.index), Some(2));
    let store = sm.store();
    assert_eq!(store.current_revision(), 3);
    assert!(
        store
            .range(b"c", folio::RangeOptions::current())
            .unwrap()
            .kvs
            .is_empty()
    );
    // The next entry takes the next revision.
    let answers = sm.apply(vec![put(7, "a", "3")]).await.unwrap();
    assert_eq!(answers[0].revision, 4);
    assert_eq!(
        sm.applied_state().await.unwrap().0.map(|l| l.index),
        Some(7)
    );
}

#[tokio::test]
async fn a_lease_granted_without_an_id_takes_the_entry_index_and_its_revoke_deletes_its_keys() {
    let dir = tempfile::tempdir().unwrap();
    let mut sm = StateMachine::open(dir.path()).unwrap();
    let answers = sm
        .apply(vec![
            entry(
                1,
                EntryPayload::Normal(Command::LeaseGrant { id: 0, ttl: 60 }),
            ),
            entry(
                2,
                EntryPayload::Normal(Command::Put {
                    key: b"leased".to_vec(),
                    value: b"v".to_vec(),
                    lease: 1,
                }),
            ),
            // Granting the same id again is refused, on every member alike (and so is a replay).
            entry(
                3,
                EntryPayload::Normal(Command::LeaseGrant { id: 1, ttl: 60 }),
            ),
            entry(4, EntryPayload::Normal(Command::LeaseRevoke { id: 1 })),
            entry(5, EntryPayload::Normal(Command::LeaseRevoke { id: 1 })),
        ])
        .await
        .unwrap();
    assert_eq!(
        answers[0].results,
        vec![folio_raft::OpResult::LeaseGranted { id: 1, ttl: 60 }]
    );
    assert_eq!(answers[1].revision, 2);
    assert!(answers[2].error.is_some(), "{:?}", answers[2]);
    assert_eq!((answers[3].revision, answers[3].error.clone()), (3, None));
    assert!(answers[4].error.is_some(), "{:?}", answers[4]);
    let store = sm.store();
    assert!(
        store
            .range(b"leased", folio::RangeOptions::current())
            .unwrap()
            .kvs
            .is_empty()
    );
    assert_eq!(
        sm.applied_state().await.unwrap().0.map(|l| l.index),
        Some(5)
    );
}

/// The server maps etcd's requests onto commands without losing options: `prev_kv` on puts and
/// deletes, a range's limit and count-only, compares over a key range and on a lease, refusals
/// by kind; and a member's published attributes land in `raft.members` without a revision.
#[tokio::test]
async fn commands_keep_etcds_options_and_refusals_by_kind() {
    let dir = tempfile::tempdir().unwrap();
    let mut sm = StateMachine::open(dir.path()).unwrap();
    let op_put = |key: &str, value: &str, prev_kv: bool| OpSpec::Put {
        key: key.as_bytes().to_vec(),
        value: value.as_bytes().to_vec(),
        lease: 0,
        prev_kv,
    };
    let one = |index: u64, op: OpSpec| {
        entry(
            index,
            EntryPayload::Normal(Command::Txn {
                compares: Vec::new(),
                success: vec![op],
                failure: Vec::new(),
            }),
        )
    };
    let answers = sm
        .apply(vec![
            one(1, op_put("a", "1", false)),
            one(2, op_put("a", "2", true)),
            one(3, op_put("b", "1", false)),
            entry(
                4,
                EntryPayload::Normal(Command::Txn {
                    // Every key in [a, c) was modified after revision 0, and none has a lease.
                    compares: vec![
                        CompareSpec {
                            key: b"a".to_vec(),
                            target: CompareTarget::ModRevision,
                            relation: Relation::Greater,
                            value: Vec::new(),
                            number: 0,
                            range_end: b"c".to_vec(),
                        },
                        CompareSpec {
                            key: b"a".to_vec(),
                            target: CompareTarget::Lease,
                            relation: Relation::Equal,
                            value: Vec::new(),
                            number: 0,
                            range_end: Vec::new(),
                        },
                    ],
                    success: vec![
                        OpSpec::Range {
                            key: b"a".to_vec(),
                            range_end: b"c".to_vec(),
                            options: folio_raft::RangeSpec {
                                limit: 1,
                                ..Default::default()
                            },
                        },
                        OpSpec::Range {
                            key: b"a".to_vec(),
                            range_end: b"c".to_vec(),
                            options: folio_raft::RangeSpec {
                                count_only: true,
                                revision: 2,
                                ..Default::default()
                            },
                        },
                    ],
                    failure: Vec::new(),
                }),
            ),
            one(
                5,
                OpSpec::DeleteRange {
                    key: b"a".to_vec(),
                    range_end: b"c".to_vec(),
                    prev_kv: true,
                },
            ),
            entry(6, EntryPayload::Normal(Command::Compact { revision: 4 })),
            entry(7, EntryPayload::Normal(Command::Compact { revision: 2 })),
            entry(
                8,
                EntryPayload::Normal(Command::SetMember {
                    id: 7,
                    name: "m7".into(),
                    client_urls: vec!["http://127.0.0.1:2379".into()],
                }),
            ),
        ])
        .await
        .unwrap();
    use folio_raft::OpResult;
    assert_eq!(answers[1].results.len(), 1);
    let OpResult::Put {
        prev_kv: Some(prev),
    } = &answers[1].results[0]
    else {
        panic!("{:?}", answers[1]);
    };
    // A new store is at revision 1: the puts took revisions 2, 3 and 4.
    assert_eq!((prev.value.as_slice(), prev.mod_revision), (&b"1"[..], 2));
    assert!(answers[3].succeeded, "{:?}", answers[3]);
    match answers[3].results.as_slice() {
        [
            OpResult::Range { kvs, count, more },
            OpResult::Range {
                kvs: counted,
                count: then,
                ..
            },
        ] => {
            assert_eq!((kvs.len(), *count, *more), (1, 2, true));
            assert_eq!((counted.len(), *then), (0, 1));
        }
        other => panic!("{other:?}"),
    }
    match answers[4].results.as_slice() {
        [OpResult::DeleteRange { deleted, prev_kvs }] => {
            assert_eq!(*deleted, 2);
            let keys: Vec<&[u8]> = prev_kvs.iter().map(|kv| kv.key.as_slice()).collect();
            assert_eq!(keys, [&b"a"[..], &b"b"[..]]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(answers[5].refusal, None);
    assert_eq!(answers[6].refusal, Some(folio_raft::Refusal::Compacted));
    assert_eq!(answers[7].revision, 5, "SetMember writes no revision");
    let members = folio_raft::members(&sm.store()).unwrap();
    assert_eq!(members[&7].name, "m7");
}

/// Applying a batch in one store commit must keep each entry's own revision and answer, and a
/// watcher must see each entry's change at that entry's revision: the threat is a batch that
/// shares one revision, or queues its events to watchers under the batch's last one.
#[tokio::test]
async fn a_batch_applied_in_one_commit_keeps_each_entrys_revision_and_watch_events() {
    let dir = tempfile::tempdir().unwrap();
    let mut sm = StateMachine::open(dir.path()).unwrap();
    let store = sm.store();
    let watcher = store
        .watch(folio::KeyRange::prefix(b"k"), folio::WatchOptions::new())
        .unwrap();
    let answers = sm
        .apply(vec![
            put(1, "k1", "a"),
            entry(2, EntryPayload::Blank),
            put(3, "k2", "b"),
            put(4, "k1", "c"),
        ])
        .await
        .unwrap();
    let revisions: Vec<i64> = answers.iter().map(|r| r.revision).collect();
    // A new store is at revision 1; the blank entry writes no revision.
    assert_eq!(revisions, [2, 2, 3, 4]);
    let mut seen = Vec::new();
    while seen.len() < 3 {
        match watcher
            .recv_timeout(std::time::Duration::from_secs(10))
            .unwrap()
        {
            Some(folio::WatchResponse::Events { events, .. }) => {
                seen.extend(events.into_iter().map(|e| (e.kv.key, e.kv.mod_revision)));
            }
            Some(_) => {}
            None => panic!("no events after {seen:?}"),
        }
    }
    assert_eq!(
        seen,
        [
            (b"k1".to_vec(), 2),
            (b"k2".to_vec(), 3),
            (b"k1".to_vec(), 4)
        ]
    );
    let kv = store
        .range(b"k1", folio::RangeOptions::current())
        .unwrap()
        .kvs;
    assert_eq!((kv[0].version, kv[0].create_revision), (2, 2));
}

fn put_cmd(key: &str, value: &str) -> Command {
    Command::Put {
        key: key.as_bytes().to_vec(),
        value: value.as_bytes().to_vec(),
        lease: 0,
    }
}

/// A transaction that puts `key` twice in one branch: the store refuses it.
fn twice(key: &str) -> Command {
    Command::Txn {
        compares: Vec::new(),
        success: vec![put_op(key), put_op(key)],
        failure: Vec::new(),
    }
}

/// A batch entry (several client writes proposed as one entry) answers each command as if it
/// were an entry of its own: its own revision, in order, in one commit.
#[tokio::test]
async fn a_batch_entry_applies_each_command_at_its_own_revision_with_its_own_answer() {
    let dir = tempfile::tempdir().unwrap();
    let mut sm = StateMachine::open(dir.path()).unwrap();
    let batch = entry(
        2,
        EntryPayload::Normal(Command::Batch {
            commands: vec![put_cmd("a", "1"), put_cmd("b", "1"), put_cmd("a", "2")],
        }),
    );
    let answers = sm.apply(vec![put(1, "z", "0"), batch]).await.unwrap();
    assert_eq!(answers[0].revision, 2);
    let each: Vec<i64> = answers[1].batch.iter().map(|r| r.revision).collect();
    assert_eq!(each, vec![3, 4, 5]);
    assert_eq!(answers[1].revision, 5);
    let store = sm.store();
    let a = store
        .range(&b"a"[..], folio::RangeOptions::current())
        .unwrap();
    assert_eq!(a.kvs[0].value, b"2");
    assert_eq!(a.kvs[0].create_revision, 3);
    assert_eq!(sm.applied_state().await.unwrap().0.unwrap().index, 2);
}

/// A command the store refuses inside a batch entry is refused alone: the batch's other
/// commands still apply, each at the revision it would have had as an entry of its own.
#[tokio::test]
async fn a_refused_command_in_a_batch_entry_answers_with_its_refusal_and_the_others_apply() {
    let dir = tempfile::tempdir().unwrap();
    let mut sm = StateMachine::open(dir.path()).unwrap();
    let batch = entry(
        1,
        EntryPayload::Normal(Command::Batch {
            commands: vec![put_cmd("a", "1"), twice("b"), put_cmd("c", "1")],
        }),
    );
    let answers = sm.apply(vec![batch, put(2, "d", "1")]).await.unwrap();
    let b = &answers[0].batch;
    assert_eq!(b.len(), 3);
    assert_eq!((b[0].revision, b[0].error.is_none()), (2, true));
    assert_eq!(b[1].refusal, Some(folio_raft::Refusal::DuplicateKey));
    assert_eq!((b[2].revision, b[2].error.is_none()), (3, true));
    assert_eq!(answers[1].revision, 4);
    let all = sm
        .store()
        .range(folio::KeyRange::all(), folio::RangeOptions::current())
        .unwrap();
    let keys: Vec<&[u8]> = all.kvs.iter().map(|kv| kv.key.as_slice()).collect();
    assert_eq!(keys, vec![&b"a"[..], b"c", b"d"]);
    assert_eq!(sm.applied_state().await.unwrap().0.unwrap().index, 2);
}
