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
        // etcd bounds keys and values only by the request size; folio's own bounds are lower
        // for keys (they must fit a page), and a request past them is too large for this server.
        E::KeyLength { .. } | E::ValueTooLarge { .. } => request_too_large(),
        other => Status::unknown(format!("etcdserver: {other}")),
    }
}
