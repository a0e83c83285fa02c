//! Compiles etcd's API (`proto/`) with protox, a protobuf compiler in pure Rust, so that no
//! system `protoc` is needed, and generates the tonic services and clients from it.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/etcd/api/mvccpb/kv.proto",
        "proto/etcd/api/etcdserverpb/rpc.proto",
    ];
    let descriptors = protox::compile(files, ["proto"])?;
    tonic_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(descriptors)?;
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    Ok(())
}
