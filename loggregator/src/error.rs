//! `LoggregatorError`: why the loggregator could not start.

/// Startup failures. Once running, the loggregator reports problems through tracing and metrics.
#[derive(Debug, thiserror::Error)]
pub enum LoggregatorError {
    /// The configuration is invalid (the message names the field).
    #[error("invalid loggregator configuration: {0}")]
    Config(String),
    /// A listener could not be prepared (non-blocking mode, address, tokio registration).
    #[error("loggregator listener: {0}")]
    Listener(#[source] std::io::Error),
    /// The HTTP client could not be built.
    #[error("loggregator HTTP client: {0}")]
    HttpClient(String),
}
