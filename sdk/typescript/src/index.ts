export { Sandbox, type SandboxOpts, type SandboxConnectOptions } from './sandbox.js';
export { type SandboxInfo, type ApiOptions, DEFAULT_API_URL } from './api.js';
export {
  Commands,
  CommandHandle,
  ChannelSink,
  type CommandResult,
  type CommandStartOptions,
  type CommandConnectOptions,
  type ProcessInfo,
  type OutputCallback,
  type BytesCallback,
  type MergedCallback,
} from './commands.js';
export { Filesystem } from './files.js';
export { Pty, PtyHandle, DEFAULT_PTY_TIMEOUT_MS, type PtySize, type PtyCreateOpts, type PtyConnectOpts } from './pty.js';
export { WatchHandle } from './files-watch.js';
export {
  FileType,
  FilesystemEventType,
  type EntryInfo,
  type WriteInfo,
  type WriteEntry,
  type WriteData,
  type FilesystemEvent,
  type FilesystemRequestOpts,
  type FilesystemReadOpts,
  type FilesystemWriteOpts,
  type FilesystemListOpts,
  type FilesystemRemoveOpts,
  type FilesystemMakeDirOpts,
  type WatchOpts,
  type Username,
  type BlobLike,
  type ReadableStreamLike,
} from './files-types.js';
export {
  AgentConnection,
  type AgentConnectionOptions,
  type ConnectionInfo,
  type ConnectionSource,
} from './agent.js';
export { AgentClient } from './agent-client.js';
export {
  SandboxError,
  AuthenticationError,
  NotFoundError,
  InvalidArgumentError,
  FileNotFoundError,
  PermissionError,
  FileExistsError,
  NotEnoughSpaceError,
  ConnectionError,
  TimeoutError,
  CommandExitError,
  type TimeoutKind,
  type CommandStatus,
} from './errors.js';
