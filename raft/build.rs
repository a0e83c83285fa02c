//! The members' gRPC service, described in Rust: one unary method that carries a typed message
//! (see `src/network.rs`), so no .proto file and no protoc are needed.

fn main() {
    let call = tonic_build::manual::Method::builder()
        .name("call")
        .route_name("Call")
        .input_type("crate::network::Frame")
        .output_type("crate::network::Frame")
        .codec_path("tonic::codec::ProstCodec")
        .build();
    let service = tonic_build::manual::Service::builder()
        .name("Raft")
        .package("folio.raft")
        .method(call)
        .build();
    tonic_build::manual::Builder::new().compile(&[service]);
}
