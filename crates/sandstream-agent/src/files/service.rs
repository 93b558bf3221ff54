//! The gRPC face of the files: `FileService`. Every handler checks the token first
//! (exactly as `ExecService`'s, which also marks the connection authenticated), then
//! resolves the request's user and paths, then does the work on the pool as that user.

use std::sync::Arc;
use std::time::Duration;

use sandstream_proto::v1::file_service_server::FileService;
use sandstream_proto::v1::{
    ListDirRequest, ListDirResponse, MakeDirRequest, MakeDirResponse, MoveRequest, MoveResponse, ReadRequest,
    RemoveRequest, RemoveResponse, StatRequest, StatResponse, WatchDirRequest, WriteRequest, WriteResponse,
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::{Request, Response, Status, Streaming};

use super::error::FsError;
use super::ops::DEFAULT_DIR_MODE;
use super::pool::Pool;
use super::read::ReadStream;
use super::watch::WatchStream;
use super::who::{Users, Who, resolve};
use super::{entries, ops, read, watch, write};
use crate::auth::{Auth, authorize};

/// Read and Write streams open at once (each holds a file descriptor).
pub(crate) const MAX_OPEN_FILES: usize = 256;
/// WatchDir streams at once (each holds an inotify instance; the kernel's default is
/// 128 per user).
pub(crate) const MAX_WATCHES: usize = 32;

/// The `FileService` implementation.
#[derive(Debug, Clone)]
pub(crate) struct FileServer {
    auth: Arc<Auth>,
    pool: Pool,
    users: Users,
    keepalive: Duration,
    open_files: Arc<Semaphore>,
    watches: Arc<Semaphore>,
}

impl FileServer {
    pub(crate) fn new(auth: Arc<Auth>, pool: Pool, users: Users, keepalive: Duration) -> FileServer {
        FileServer {
            auth,
            pool,
            users,
            keepalive,
            open_files: Arc::new(Semaphore::new(MAX_OPEN_FILES)),
            watches: Arc::new(Semaphore::new(MAX_WATCHES)),
        }
    }

    async fn who(&self, user: &str) -> Result<Who, FsError> {
        self.users.resolve(&self.pool, user).await
    }

    fn open_file(&self) -> Result<OwnedSemaphorePermit, FsError> {
        self.open_files
            .clone()
            .try_acquire_owned()
            .map_err(|_| FsError::Exhausted(format!("too many files open at once (the agent serves {MAX_OPEN_FILES})")))
    }
}

#[tonic::async_trait]
impl FileService for FileServer {
    type ReadStream = ReadStream;
    type WatchDirStream = WatchStream;

    async fn stat(&self, request: Request<StatRequest>) -> Result<Response<StatResponse>, Status> {
        authorize(&self.auth, &request)?;
        let req = request.into_inner();
        let who = self.who(&req.user).await?;
        let path = resolve(&who.home, &req.path, "path")?;
        let entry = self.pool.run(who.creds.as_ref(), move || entries::stat(&path)).await?;
        Ok(Response::new(StatResponse { entry: Some(entry) }))
    }

    async fn list_dir(&self, request: Request<ListDirRequest>) -> Result<Response<ListDirResponse>, Status> {
        authorize(&self.auth, &request)?;
        let req = request.into_inner();
        let who = self.who(&req.user).await?;
        let path = resolve(&who.home, &req.path, "path")?;
        let depth = req.depth;
        let entries =
            self.pool.run(who.creds.as_ref(), move || entries::list(&path, depth, entries::MAX_LIST_ENTRIES)).await?;
        Ok(Response::new(ListDirResponse { entries }))
    }

    async fn read(&self, request: Request<ReadRequest>) -> Result<Response<ReadStream>, Status> {
        authorize(&self.auth, &request)?;
        let req = request.into_inner();
        let who = self.who(&req.user).await?;
        let path = resolve(&who.home, &req.path, "path")?;
        let permit = self.open_file()?;
        let p = path.clone();
        let (file, entry) = self.pool.run(who.creds.as_ref(), move || read::open(&p)).await?;
        let stream = read::stream(self.pool.clone(), path, file, entry, req.offset, req.length, permit)?;
        Ok(Response::new(stream))
    }

    async fn write(&self, request: Request<Streaming<WriteRequest>>) -> Result<Response<WriteResponse>, Status> {
        authorize(&self.auth, &request)?;
        let mut messages = request.into_inner();
        let Some(first) = messages.message().await? else {
            return Err(
                FsError::InvalidArgument("a Write stream must start with a message naming the file".into()).into()
            );
        };
        write::check_first(&first)?;
        let who = self.who(&first.user).await?;
        let path = resolve(&who.home, &first.path, "path")?;
        let permit = self.open_file()?;
        let temp = write::Temp::create(&self.pool, who.creds.as_ref(), path).await?;
        if let Err(e) = temp.append(first.data).await {
            temp.discard().await;
            return Err(e.into());
        }
        loop {
            let next = match messages.message().await {
                Ok(next) => next,
                Err(status) => {
                    temp.discard().await;
                    return Err(status);
                }
            };
            let Some(msg) = next else { break };
            let written = match write::check_later(&msg) {
                Ok(()) => temp.append(msg.data).await,
                Err(e) => Err(e),
            };
            if let Err(e) = written {
                temp.discard().await;
                return Err(e.into());
            }
        }
        // A client that drops its call mid-stream resets it, and that can reach this
        // handler as the request stream's clean end. The reset itself is noticed by the
        // server only while the handler waits: waiting once here lets it drop the handler
        // (and with it the temporary file) before anything is committed.
        tokio::task::yield_now().await;
        let entry = temp.commit(first.mode).await?;
        drop(permit);
        Ok(Response::new(WriteResponse { entry: Some(entry) }))
    }

    async fn make_dir(&self, request: Request<MakeDirRequest>) -> Result<Response<MakeDirResponse>, Status> {
        authorize(&self.auth, &request)?;
        let req = request.into_inner();
        if req.mode & !0o7777 != 0 {
            return Err(Status::invalid_argument(format!("mode {:#o} has bits other than 07777", req.mode)));
        }
        let who = self.who(&req.user).await?;
        let path = resolve(&who.home, &req.path, "path")?;
        let mode = if req.mode == 0 { DEFAULT_DIR_MODE } else { req.mode };
        let (entry, created) = self.pool.run(who.creds.as_ref(), move || ops::make_dir(&path, mode)).await?;
        Ok(Response::new(MakeDirResponse { entry: Some(entry), created }))
    }

    async fn r#move(&self, request: Request<MoveRequest>) -> Result<Response<MoveResponse>, Status> {
        authorize(&self.auth, &request)?;
        let req = request.into_inner();
        let who = self.who(&req.user).await?;
        let source = resolve(&who.home, &req.source, "source")?;
        let destination = resolve(&who.home, &req.destination, "destination")?;
        let entry = self.pool.run(who.creds.as_ref(), move || ops::move_entry(&source, &destination)).await?;
        Ok(Response::new(MoveResponse { entry: Some(entry) }))
    }

    async fn remove(&self, request: Request<RemoveRequest>) -> Result<Response<RemoveResponse>, Status> {
        authorize(&self.auth, &request)?;
        let req = request.into_inner();
        let who = self.who(&req.user).await?;
        let path = resolve(&who.home, &req.path, "path")?;
        let recursive = req.recursive;
        self.pool.run(who.creds.as_ref(), move || ops::remove(&path, recursive)).await?;
        Ok(Response::new(RemoveResponse {}))
    }

    async fn watch_dir(&self, request: Request<WatchDirRequest>) -> Result<Response<WatchStream>, Status> {
        authorize(&self.auth, &request)?;
        let req = request.into_inner();
        let who = self.who(&req.user).await?;
        let path = resolve(&who.home, &req.path, "path")?;
        let permit = self.watches.clone().try_acquire_owned().map_err(|_| {
            FsError::Exhausted(format!("too many directory watches at once (the agent serves {MAX_WATCHES})"))
        })?;
        let stream = watch::start(self.pool.clone(), who.creds, path, req.recursive, self.keepalive, permit).await?;
        Ok(Response::new(stream))
    }
}
