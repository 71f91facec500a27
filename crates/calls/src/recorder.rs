//! Where the call runtime writes what happens to a call.

use async_trait::async_trait;

use crate::record::CallRecord;

/// A record could not be read or written; the source says why.
#[derive(Debug, thiserror::Error)]
#[error("cannot {action} call record")]
pub struct RecordError {
    /// `read` or `write`.
    pub action: &'static str,
    /// The store's error.
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

/// Keeps call records. The server's call registry implements it; the runtime writes every status
/// change of a call through it.
#[async_trait]
pub trait CallRecorder: Send + Sync + 'static {
    /// The record of call `id`, if any.
    async fn get(&self, id: &str) -> Result<Option<CallRecord>, RecordError>;
    /// Records a state change of a call.
    async fn update(&self, record: &CallRecord) -> Result<(), RecordError>;
}
