//! The sandbox's files: `sandstream.agent.v1.FileService` (Stat, ListDir, Read, Write,
//! MakeDir, Move, Remove, WatchDir).
//!
//! **Every file system call runs with the filesystem credentials of the user the request
//! is for**, on a pool thread that takes them for that one call (`creds.rs`, `pool.rs`):
//! the kernel checks each path and permission exactly as for that user's own process,
//! and what is created is the user's. The agent never checks permissions itself. Opened
//! files are then read and written from the pool without credentials, one chunk per job.

mod creds;
mod entries;
mod error;
mod ops;
mod pool;
mod read;
mod service;
mod tree;
mod watch;
mod who;
mod write;

pub(crate) use creds::AgentCreds;
pub(crate) use pool::Pool;
pub(crate) use service::FileServer;
pub(crate) use who::Users;
