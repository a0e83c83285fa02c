//! etcd's errors: the same gRPC codes and messages (etcd's `rpctypes`), because client libraries
//! match on them; and the mapping from folio's errors to them.

use tonic::Status;

/// `etcdserver: key is not provided`.
pub fn empty_key() -> Status {
    Status::invalid_argument("etcdserver: key is not provided")
}

/// `etcdserver: key not found` (a put with `ignore_value` or `ignore_lease` of a missing key).
pub fn key_not_found() -> Status {
    Status::invalid_argument("etcdserver: key not found")
}

/// `etcdserver: value is provided`.
pub fn value_provided() -> Status {
    Status::invalid_argument("etcdserver: value is provided")
}

/// `etcdserver: lease is provided`.
pub fn lease_provided() -> Status {
    Status::invalid_argument("etcdserver: lease is provided")
}

/// `etcdserver: too many operations in txn request`.
pub fn too_many_ops() -> Status {
    Status::invalid_argument("etcdserver: too many operations in txn request")
}

/// `etcdserver: duplicate key given in txn request`.
pub fn duplicate_key() -> Status {
    Status::invalid_argument("etcdserver: duplicate key given in txn request")
}

/// `etcdserver: invalid sort option`.
pub fn invalid_sort_option() -> Status {
    Status::invalid_argument("etcdserver: invalid sort option")
}

/// `etcdserver: mvcc: required revision has been compacted`.
pub fn compacted() -> Status {
    Status::out_of_range("etcdserver: mvcc: required revision has been compacted")
}

/// `etcdserver: mvcc: required revision is a future revision`.
pub fn future_rev() -> Status {
    Status::out_of_range("etcdserver: mvcc: required revision is a future revision")
}

/// `etcdserver: mvcc: database space exceeded`.
pub fn no_space() -> Status {
    Status::resource_exhausted("etcdserver: mvcc: database space exceeded")
}

/// `etcdserver: requested lease not found`.
pub fn lease_not_found() -> Status {
    Status::not_found("etcdserver: requested lease not found")
}

/// `etcdserver: lease already exists`.
pub fn lease_exists() -> Status {
    Status::failed_precondition("etcdserver: lease already exists")
}

/// `etcdserver: too large lease TTL`.
pub fn lease_ttl_too_large() -> Status {
    Status::out_of_range("etcdserver: too large lease TTL")
}

/// `etcdserver: request is too large`.
pub fn request_too_large() -> Status {
    Status::invalid_argument("etcdserver: request is too large")
}

/// A key longer than folio stores: etcd bounds keys only by the request's size, folio by its
/// page size (a key must fit a quarter of a page), so this is folio-server's own refusal.
pub fn key_too_large(len: usize, max: usize) -> Status {
    Status::invalid_argument(format!(
        "etcdserver: key is too large: {len} bytes; folio-server stores keys up to {max} bytes"
    ))
}

/// `etcdserver: authentication is not enabled`: etcd's answer to Authenticate while auth is off,
/// which etcd's clients take as "go on without a token".
pub fn auth_not_enabled() -> Status {
    Status::failed_precondition("etcdserver: authentication is not enabled")
}

/// `etcdserver: bad leader transferee`.
pub fn bad_leader_transferee() -> Status {
    Status::failed_precondition("etcdserver: bad leader transferee")
}

/// `etcdserver: no leader`: the cluster has no leader to serve the request.
pub fn no_leader() -> Status {
    Status::unavailable("etcdserver: no leader")
}

/// `etcdserver: not leader`: a request only the leader serves reached another member.
pub fn not_leader() -> Status {
    Status::failed_precondition("etcdserver: not leader")
}

/// `etcdserver: request timed out`: the write may or may not have been applied.
pub fn timed_out() -> Status {
    Status::unavailable("etcdserver: request timed out")
}

/// A request etcd would serve that this server does not: named, so nobody mistakes it for a
/// bug in their request.
pub fn unsupported(what: &str) -> Status {
    Status::unimplemented(format!("folio-server: {what} is not supported"))
}

/// etcd's error for a folio error.
pub fn from_folio(e: folio::Error) -> Status {
    use folio::Error as E;
    match e {
        E::Compacted { .. } => compacted(),
        E::FutureRevision { .. } => future_rev(),
        E::DuplicateKey { .. } => duplicate_key(),
        E::DatabaseFull { .. } => no_space(),
        E::LeaseNotFound { .. } => lease_not_found(),
        E::LeaseExists { .. } => lease_exists(),
        E::LeaseTtl { .. } => lease_ttl_too_large(),
        // Requests are checked before they reach the store; these are the store's own word.
        E::KeyLength { len: 0, .. } => empty_key(),
        E::KeyLength { len, max } => key_too_large(len, max),
        // etcd bounds values only by the request size; folio's bound (about 1 GiB) is far above
        // etcd's default request limit, and only a raised limit reaches it.
        E::ValueTooLarge { .. } => request_too_large(),
        other => Status::unknown(format!("etcdserver: {other}")),
    }
}

/// grpc-go's refusal of a request past the receive limit, which etcd sends and clients match on:
/// `ResourceExhausted`, "grpc: received message larger than max (X vs. Y)". tonic refuses it with
/// `OutOfRange`, "Error, decoded message length too large: found X bytes, the limit is: Y bytes",
/// in a trailers-only response; this rewrites that response's status into grpc-go's and leaves
/// every other response as it is. The server applies it to every response as a tower layer.
pub fn as_grpc_go_size_refusal<B>(
    mut response: tonic::codegen::http::Response<B>,
) -> tonic::codegen::http::Response<B> {
    let headers = response.headers_mut();
    if headers.get("grpc-status").map(|v| v.as_bytes()) != Some(b"11".as_slice()) {
        return response;
    }
    let Some(message) = headers
        .get("grpc-message")
        .map(|v| percent_decoded(v.as_bytes()))
    else {
        return response;
    };
    let Some(sizes) = message.strip_prefix("Error, decoded message length too large: found ")
    else {
        return response;
    };
    let Some((found, limit)) = sizes.split_once(" bytes, the limit is: ") else {
        return response;
    };
    let limit = limit.trim_end_matches(" bytes");
    let refusal = Status::resource_exhausted(format!(
        "grpc: received message larger than max ({found} vs. {limit})"
    ));
    headers.remove("grpc-message");
    if refusal.add_header(headers).is_err() {
        crate::error!("cannot rewrite an oversized request's refusal: {message}");
    }
    response
}

/// The text of a percent-encoded `grpc-message` header.
fn percent_decoded(bytes: &[u8]) -> String {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
