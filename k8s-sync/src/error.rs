//! The crate's one error type.

/// Errors of k8s-sync's library code.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The registry could not be reached or the request failed in transport.
    #[error("registry request {what}: {source}")]
    Http {
        /// The request, e.g. `PUT /v1/txn`.
        what: String,
        /// The transport error.
        #[source]
        source: reqwest::Error,
    },
    /// The registry answered with an unexpected status.
    #[error("registry request {what}: status {status}: {body}")]
    Status {
        /// The request.
        what: String,
        /// HTTP status code.
        status: u16,
        /// The response body (Consul's plain-text error).
        body: String,
    },
    /// A transaction was rolled back.
    #[error("registry transaction rejected: {0}")]
    TxnRejected(String),
    /// A response could not be decoded.
    #[error("decoding the registry's answer to {what}: {message}")]
    Decode {
        /// The request.
        what: String,
        /// What was wrong.
        message: String,
    },
    /// A Kubernetes API call failed.
    #[error("kubernetes: {0}")]
    Kube(#[from] kube::Error),
    /// Invalid configuration.
    #[error("invalid configuration: {0}")]
    Config(String),
}

/// Shorthand.
pub type Result<T, E = Error> = std::result::Result<T, E>;
