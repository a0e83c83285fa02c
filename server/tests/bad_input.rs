//! Bad input gets etcd's error or is cleaned up, and the server keeps serving: oversized and
//! malformed requests, garbage on the socket, clients that vanish mid-stream, many idle
//! connections.

mod support;

use std::time::Duration;

use folio_server::pb::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use folio_server::pb::etcdserverpb::request_op::Request as ReqOp;
use folio_server::pb::etcdserverpb::{
    Compare, DeleteRangeRequest, RequestOp, SnapshotRequest, TxnRequest,
};
use support::{assert_etcd_error, get, put};
use tokio::io::AsyncWriteExt;
use tonic::Code;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

/// Asserts the server still answers a put and a range.
async fn still_serves(server: &support::TestServer) {
    let mut kv = server.kv().await;
    kv.put(put("alive", "yes")).await.unwrap();
    assert_eq!(
        kv.range(get("alive")).await.unwrap().into_inner().kvs[0].value,
        b"yes"
    );
}

/// A request over `--max-request-bytes` gets etcd's "request is too large"; one past what gRPC
/// lets in gets grpc-go's ResourceExhausted as from etcd (tonic answered OutOfRange in other words,
/// which clients matching etcd's answer missed); both change nothing.
#[tokio::test]
async fn oversized_requests_are_refused_and_change_nothing() {
    let mut server = support::start_with(|c| c.max_request_bytes = 64 * 1024).await;
    let mut kv = server.kv().await;
    let over = "x".repeat(100 * 1024);
    assert_etcd_error(
        kv.put(put("big", &over)).await.unwrap_err(),
        Code::InvalidArgument,
        "etcdserver: request is too large",
    );
    // Past the gRPC limit (64 KiB + 512 KiB) etcd 3.4 answers with grpc-go's refusal, as
    // `etcdctl put` shows against it; tonic's own is OutOfRange with other words.
    let far_over = put("big", &"x".repeat(1024 * 1024));
    let len = prost::Message::encoded_len(&far_over);
    assert_etcd_error(
        kv.put(far_over).await.unwrap_err(),
        Code::ResourceExhausted,
        &format!("grpc: received message larger than max ({len} vs. 589824)"),
    );
    assert!(
        kv.range(get("big"))
            .await
            .unwrap()
            .into_inner()
            .kvs
            .is_empty()
    );
    still_serves(&server).await;
    server.stop().await;
}

/// A key longer than folio stores (1001 bytes at the server's 4 KiB pages, far under the request
/// limit) is refused with a message naming its length and the limit, in a put and in a txn's
/// put, and changes nothing. It was refused as "etcdserver: request is too large", which it is
/// not: etcd takes such a key. Reads, deletes and compares of it find nothing, as of any key never
/// stored, as from etcd.
#[tokio::test]
async fn a_key_longer_than_folio_stores_is_refused_naming_the_limit() {
    let mut server = support::start().await;
    let max = server.running.as_ref().unwrap().shared().key_len_max();
    assert_eq!(max, 1001, "the server's 4 KiB pages");
    let mut kv = server.kv().await;
    let longest = "k".repeat(max);
    kv.put(put(&longest, "v")).await.unwrap();
    let long = "k".repeat(5000);
    let refusal =
        "etcdserver: key is too large: 5000 bytes; folio-server stores keys up to 1001 bytes";
    assert_etcd_error(
        kv.put(put(&long, "v")).await.unwrap_err(),
        Code::InvalidArgument,
        refusal,
    );
    let in_txn = TxnRequest {
        success: vec![RequestOp {
            request: Some(ReqOp::RequestPut(put(&long, "v"))),
        }],
        ..TxnRequest::default()
    };
    assert_etcd_error(
        kv.txn(in_txn).await.unwrap_err(),
        Code::InvalidArgument,
        refusal,
    );
    let r = kv.range(get(&long)).await.unwrap().into_inner();
    assert!(r.kvs.is_empty());
    assert_eq!(r.header.unwrap().revision, 2, "only the longest key's put");
    let d = kv
        .delete_range(DeleteRangeRequest {
            key: long.clone().into(),
            ..DeleteRangeRequest::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((d.deleted, d.header.unwrap().revision), (0, 2));
    let absent = TxnRequest {
        compare: vec![Compare {
            key: long.into(),
            target: CompareTarget::Version as i32,
            result: CompareResult::Equal as i32,
            target_union: Some(TargetUnion::Version(0)),
            range_end: Vec::new(),
        }],
        ..TxnRequest::default()
    };
    assert!(kv.txn(absent).await.unwrap().into_inner().succeeded);
    still_serves(&server).await;
    server.stop().await;
}

/// Sends raw bytes as a gRPC message, so a test can send what no generated client would.
#[derive(Clone, Default)]
struct RawCodec;

struct Raw;

impl Encoder for Raw {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        bytes::BufMut::put_slice(dst, &item);
        Ok(())
    }
}

impl Decoder for Raw {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, tonic::Status> {
        let mut v = vec![0; bytes::Buf::remaining(src)];
        bytes::Buf::copy_to_slice(src, &mut v);
        Ok(Some(v))
    }
}

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = Raw;
    type Decoder = Raw;
    fn encoder(&mut self) -> Raw {
        Raw
    }
    fn decoder(&mut self) -> Raw {
        Raw
    }
}

/// A message that is not a protobuf of the method's request type is refused with an error and
/// changes nothing.
#[tokio::test]
async fn a_malformed_protobuf_is_refused_and_the_server_keeps_serving() {
    let mut server = support::start().await;
    let mut grpc = tonic::client::Grpc::new(server.channel().await);
    grpc.ready().await.unwrap();
    let path = tonic::codegen::http::uri::PathAndQuery::from_static("/etcdserverpb.KV/Put");
    // Field 1 (key) says it is 100 bytes long and the message ends after 3.
    let garbage = vec![0x0a, 100, b'a', b'b', b'c'];
    let e = grpc
        .unary::<Vec<u8>, Vec<u8>, _>(tonic::Request::new(garbage), path, RawCodec)
        .await
        .unwrap_err();
    assert_ne!(e.code(), Code::Ok);
    still_serves(&server).await;
    server.stop().await;
}

/// Bytes that are not HTTP/2 at all close that connection only.
#[tokio::test]
async fn garbage_on_the_socket_closes_only_that_connection() {
    let mut server = support::start().await;
    let addr = server.running.as_ref().unwrap().addrs()[0];
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.0\r\n\r\n\x00\x01\x02 not http2 at all")
        .await
        .unwrap();
    drop(s);
    still_serves(&server).await;
    server.stop().await;
}

/// A client that goes away in the middle of a snapshot stream: the server stops sending,
/// removes its file, and keeps serving.
#[tokio::test]
async fn a_client_vanishing_mid_snapshot_is_cleaned_up() {
    let mut server = support::start().await;
    let mut kv = server.kv().await;
    for i in 0..300 {
        kv.put(put(&format!("v{i:03}"), &"z".repeat(1000)))
            .await
            .unwrap();
    }
    let mut m = server.maintenance().await;
    let mut stream = m.snapshot(SnapshotRequest {}).await.unwrap().into_inner();
    assert!(stream.message().await.unwrap().unwrap().remaining_bytes > 0);
    drop(stream);
    drop(m);
    let leftovers = || {
        std::fs::read_dir(server.data_dir())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("snapshot."))
            .count()
    };
    let mut waited = 0;
    while leftovers() > 0 && waited < 100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        waited += 1;
    }
    assert_eq!(
        leftovers(),
        0,
        "the snapshot's file is removed once its client is gone"
    );
    still_serves(&server).await;
    server.stop().await;
}

/// A thousand connections that never send a byte do not stop the server from serving.
#[tokio::test]
async fn a_thousand_idle_connections_do_not_stop_the_server() {
    let mut server = support::start().await;
    let addr = server.running.as_ref().unwrap().addrs()[0];
    let mut idle = Vec::new();
    for _ in 0..1000 {
        idle.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    still_serves(&server).await;
    drop(idle);
    still_serves(&server).await;
    server.stop().await;
}
