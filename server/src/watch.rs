//! etcd's Watch service: one bidirectional stream per client carrying any number of watchers.
//!
//! Each create request makes a folio [`Watcher`](folio::Watcher) and a task that forwards what
//! it receives; a cancel request, or the client going away, ends the task, which drops (and so
//! cancels) the watcher. A watcher whose start revision has been compacted gets etcd's answer:
//! `created`, then a response with `compact_revision` set and `canceled`; one that starts at the
//! compacted revision itself is served from there by folio, as by etcd.

use std::collections::HashMap;
use std::time::Duration;

use folio::{EventKind, KeyRange, WatchOptions};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::kv::{key_range, to_pb};
use crate::pb::etcdserverpb::watch_create_request::FilterType;
use crate::pb::etcdserverpb::watch_request::RequestUnion;
use crate::pb::etcdserverpb::watch_server::Watch;
use crate::pb::etcdserverpb::{WatchCreateRequest, WatchRequest, WatchResponse};
use crate::pb::mvccpb;
use crate::state::Shared;

/// How often a watcher that asked for progress notifications gets one (etcd: 10 minutes).
pub const PROGRESS_NOTIFY_INTERVAL: Duration = Duration::from_secs(600);

/// Responses queued per stream before the forwarding tasks wait for the client.
const STREAM_BUFFER: usize = 128;

/// The Watch service.
pub struct WatchService {
    shared: Shared,
}

impl WatchService {
    /// A Watch service on `shared`.
    pub fn new(shared: Shared) -> WatchService {
        WatchService { shared }
    }
}

type Out = mpsc::Sender<Result<WatchResponse, Status>>;

/// A folio event as etcd's.
fn event(e: folio::Event) -> mvccpb::Event {
    mvccpb::Event {
        r#type: match e.kind {
            EventKind::Put => mvccpb::event::EventType::Put,
            EventKind::Delete => mvccpb::event::EventType::Delete,
        } as i32,
        kv: Some(to_pb(e.kv)),
        prev_kv: e.prev_kv.map(to_pb),
    }
}

/// What a watcher watches, to watch it again on a replicated member's new store.
struct Watched {
    range: KeyRange,
    options: WatchOptions,
    /// Changes when a snapshot install replaces the member's store (`None` on a single
    /// member, whose store is never replaced).
    installs: Option<tokio::sync::watch::Receiver<u64>>,
}

impl Watched {
    /// Waits until a snapshot install has replaced the store (forever on a single member).
    async fn replaced(&mut self) {
        let changed = match &mut self.installs {
            Some(installs) => installs.changed().await.is_ok(),
            None => false,
        };
        if !changed {
            // A single member, or a member shutting down: no install will come.
            std::future::pending::<()>().await;
        }
    }
}

/// Forwards what `watcher` receives to `out` as watch `id`'s responses, until the watcher ends
/// or the client goes away. When a snapshot install replaces a replicated member's store, the
/// old store gets no more events: the watch goes on on the new one, from the first revision it
/// had not given (the new store holds the same history), or ends as compacted if the snapshot's
/// compaction passed that revision.
async fn forward(
    shared: Shared,
    id: i64,
    mut watched: Watched,
    mut watcher: folio::Watcher,
    out: Out,
) {
    loop {
        let got = tokio::select! {
            got = std::future::poll_fn(|cx| watcher.poll_recv(cx)) => got,
            () = watched.replaced() => {
                let options = watched.options.clone().start_revision(watcher.next_revision());
                match shared.store().watch(watched.range.clone(), options) {
                    Ok(w) => {
                        watcher = w;
                        continue;
                    }
                    Err(folio::Error::Compacted { compacted, .. }) => {
                        Ok(folio::WatchResponse::Compacted { compact_revision: compacted })
                    }
                    Err(e) => Err(e),
                }
            }
        };
        let (msg, last) = match got {
            Ok(folio::WatchResponse::Events { revision, events }) => (
                WatchResponse {
                    header: shared.header(revision),
                    watch_id: id,
                    events: events.into_iter().map(event).collect(),
                    ..WatchResponse::default()
                },
                false,
            ),
            Ok(folio::WatchResponse::Progress { revision }) => (
                WatchResponse {
                    header: shared.header(revision),
                    watch_id: id,
                    ..WatchResponse::default()
                },
                false,
            ),
            Ok(folio::WatchResponse::Compacted { compact_revision }) => {
                (compacted(&shared, id, compact_revision), true)
            }
            Err(e) => (
                WatchResponse {
                    header: shared.header_now(),
                    watch_id: id,
                    canceled: true,
                    cancel_reason: crate::errors::from_folio(e).message().to_string(),
                    ..WatchResponse::default()
                },
                true,
            ),
        };
        if out.send(Ok(msg)).await.is_err() || last {
            return;
        }
    }
}

/// etcd's answer to a watcher that compaction overtook.
fn compacted(shared: &Shared, id: i64, compact_revision: i64) -> WatchResponse {
    WatchResponse {
        header: shared.header_now(),
        watch_id: id,
        compact_revision,
        canceled: true,
        ..WatchResponse::default()
    }
}

/// One client's stream: its watchers by id.
struct Session {
    shared: Shared,
    out: Out,
    watchers: HashMap<i64, JoinHandle<()>>,
    next_id: i64,
}

impl Session {
    async fn send(&self, msg: WatchResponse) -> bool {
        self.out.send(Ok(msg)).await.is_ok()
    }

    async fn create(&mut self, c: WatchCreateRequest) -> bool {
        let id = if c.watch_id != 0 {
            c.watch_id
        } else {
            while self.watchers.contains_key(&self.next_id) {
                self.next_id += 1;
            }
            self.next_id
        };
        if self.watchers.contains_key(&id) {
            // etcd: a watch id already in use on this stream is refused with created and
            // canceled both set.
            return self
                .send(WatchResponse {
                    header: self.shared.header_now(),
                    watch_id: id,
                    created: true,
                    canceled: true,
                    cancel_reason: "etcdserver: duplicate watch ID".into(),
                    ..WatchResponse::default()
                })
                .await;
        }
        let key = if c.key.is_empty() { vec![0] } else { c.key };
        let mut options = WatchOptions::new()
            .prev_kv(c.prev_kv)
            .filter_puts(c.filters.contains(&(FilterType::Noput as i32)))
            .filter_deletes(c.filters.contains(&(FilterType::Nodelete as i32)))
            .progress_notify(c.progress_notify.then_some(PROGRESS_NOTIFY_INTERVAL));
        let range = key_range(&key, &c.range_end);
        if c.start_revision > 0 {
            options = options.start_revision(c.start_revision);
        }
        // Subscribed before the store is taken: an install after this is seen.
        let installs = self.shared.member().map(|m| m.node().installs());
        let watched = self.shared.store().watch(range.clone(), options.clone());
        let created = WatchResponse {
            header: self.shared.header_now(),
            watch_id: id,
            created: true,
            ..WatchResponse::default()
        };
        if !self.send(created).await {
            return false;
        }
        match watched {
            Ok(watcher) => {
                let again = Watched {
                    range,
                    options,
                    installs,
                };
                let task = tokio::spawn(forward(
                    self.shared.clone(),
                    id,
                    again,
                    watcher,
                    self.out.clone(),
                ));
                self.watchers.insert(id, task);
                self.next_id = self.next_id.max(id + 1);
                true
            }
            Err(folio::Error::Compacted { compacted: c, .. }) => {
                self.send(compacted(&self.shared, id, c)).await
            }
            Err(e) => {
                self.send(WatchResponse {
                    header: self.shared.header_now(),
                    watch_id: id,
                    canceled: true,
                    cancel_reason: crate::errors::from_folio(e).message().to_string(),
                    ..WatchResponse::default()
                })
                .await
            }
        }
    }

    async fn cancel(&mut self, id: i64) -> bool {
        if let Some(task) = self.watchers.remove(&id) {
            task.abort();
            return self
                .send(WatchResponse {
                    header: self.shared.header_now(),
                    watch_id: id,
                    canceled: true,
                    ..WatchResponse::default()
                })
                .await;
        }
        true
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        for (_, task) in self.watchers.drain() {
            task.abort();
        }
    }
}

#[tonic::async_trait]
impl Watch for WatchService {
    type WatchStream = ReceiverStream<Result<WatchResponse, Status>>;

    async fn watch(
        &self,
        request: Request<Streaming<WatchRequest>>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let mut incoming = request.into_inner();
        let (out, rx) = mpsc::channel(STREAM_BUFFER);
        let mut session = Session {
            shared: self.shared.clone(),
            out,
            watchers: HashMap::new(),
            next_id: 0,
        };
        tokio::spawn(async move {
            // Ends when the client closes its side or goes away; dropping the session cancels
            // every watcher it made.
            while let Some(Ok(req)) = incoming.next().await {
                let alive = match req.request_union {
                    Some(RequestUnion::CreateRequest(c)) => session.create(c).await,
                    Some(RequestUnion::CancelRequest(c)) => session.cancel(c.watch_id).await,
                    Some(RequestUnion::ProgressRequest(_)) => {
                        // etcd: not tied to a watcher (id -1), at the current revision.
                        session
                            .send(WatchResponse {
                                header: session.shared.header_now(),
                                watch_id: -1,
                                ..WatchResponse::default()
                            })
                            .await
                    }
                    None => true,
                };
                if !alive {
                    break;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}
