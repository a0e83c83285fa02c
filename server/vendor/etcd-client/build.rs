//! folio's patch of etcd-client 0.15.0: the one change is this build script, which compiles the
//! `.proto` files with protox (a protobuf compiler in pure Rust) instead of a system `protoc`, so
//! `cargo test` builds on a fresh machine with cargo alone. The generated code is the same.

#[cfg(feature = "build-server")]
fn should_build_server() -> bool {
    true
}

#[cfg(not(feature = "build-server"))]
fn should_build_server() -> bool {
    false
}

fn main() {
    let proto_root = "proto";
    println!("cargo:rerun-if-changed={}", proto_root);

    let files = [
        "proto/auth.proto",
        "proto/kv.proto",
        "proto/rpc.proto",
        "proto/v3election.proto",
        "proto/v3lock.proto",
    ];
    let descriptors = protox::compile(files, [proto_root]).expect("Failed to parse proto files");
    tonic_build::configure()
        .build_server(should_build_server())
        .compile_fds(descriptors)
        .expect("Failed to compile proto files");
}
