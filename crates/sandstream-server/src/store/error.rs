//! What can go wrong in the store. The HTTP edge turns every one into a 500 whose
//! details are logged (`impl From<StoreError> for AppError` in `error.rs`); a socket
//! is told as little.

use crate::seal::SealError;

use super::rows::Chunk;

#[derive(Debug, thiserror::Error)]
pub(crate) enum StoreError {
    #[error("database: {0}")]
    Database(#[from] rusqlite::Error),
    /// A sandbox token could not be sealed or opened (`seal.rs`).
    #[error(transparent)]
    Seal(#[from] SealError),
    /// The database file or one beside it could not be made private.
    #[error("{path}: {source}")]
    File { path: String, source: std::io::Error },
    #[error("start the store's {name} thread: {source}")]
    Thread { name: &'static str, source: std::io::Error },
    /// The writer thread ended: no chunk can be stored any more.
    #[error("the store's writer thread is gone")]
    WriterGone,
    /// The writer thread panicked while storing the batch this chunk was in.
    #[error("the store's writer panicked")]
    WriterPanicked,
}

pub(crate) type Result<T> = std::result::Result<T, StoreError>;

/// A chunk that could not be stored: why, and the chunk (unless the writer thread is
/// gone with it).
pub(crate) type AppendError = (StoreError, Option<Chunk>);
