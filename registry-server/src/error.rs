//! The error type of `registry-server`.

/// Errors of the server library.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// Bad input from a client; the text is returned with HTTP 400.
    #[error("{0}")]
    BadRequest(String),
    /// The thing asked for does not exist; the text is returned with HTTP 404.
    #[error("{0}")]
    NotFound(String),
    /// A request body or value is over its size limit; returned with HTTP 413.
    #[error("{0}")]
    TooLarge(String),
    /// Permission was denied; returned with HTTP 403.
    #[error("Permission denied: {0}")]
    PermissionDenied(String),
    /// The request asked for a datacenter this server cannot reach.
    #[error("No path to datacenter")]
    NoPathToDatacenter,
    /// A state machine rejection or other failure, returned with HTTP 500 and this text.
    #[error("{0}")]
    Internal(String),
    /// No leader is known, so the write or read cannot be served.
    #[error("No cluster leader")]
    NoLeader,
    /// Raft refused or failed the operation.
    #[error("raft: {0}")]
    Raft(String),
    /// Persistent storage failed.
    #[error("storage: {0}")]
    Storage(String),
    /// A snapshot could not be decoded.
    #[error("snapshot: {0}")]
    Snapshot(String),
    /// Encoding of shared types failed.
    #[error(transparent)]
    Proto(#[from] registry_proto::ProtoError),
}
