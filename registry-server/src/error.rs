//! The error type of `registry-server`.

/// Errors of the server library.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// Bad input from a client; the text is returned with HTTP 400.
    #[error("{0}")]
    BadRequest(String),
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
