//! Where a call's message audio comes from.

use std::sync::Arc;

use async_trait::async_trait;

/// Why a message's audio cannot be had.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AudioError {
    /// The item id is not one this source can resolve.
    #[error("the ItemId {0:?} is not one this voice-mail store issued")]
    MalformedId(String),
    /// The item has no stored audio.
    #[error("no audio is stored for the item")]
    NotFound,
    /// The item's audio is empty.
    #[error("the message has no audio")]
    Empty,
    /// Reading the stored audio failed.
    #[error("cannot read the message audio")]
    Read(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// The decoded audio of voice-mail items: 8 kHz mono signed 16-bit PCM, ready to encode.
#[async_trait]
pub trait AudioSource: Send + Sync + 'static {
    /// The audio of item `item_id`.
    async fn pcm(&self, item_id: &str) -> Result<Arc<[i16]>, AudioError>;
}
