//! The error type of `registry-proto`.

/// Errors raised while decoding or validating shared types.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProtoError {
    /// A Raft log entry or snapshot could not be encoded or decoded.
    #[error("encoding error: {0}")]
    Encoding(String),
    /// A request body or parameter was not valid; the text is shown to the client.
    #[error("{0}")]
    Invalid(String),
}
