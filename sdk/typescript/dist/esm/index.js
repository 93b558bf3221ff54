export { Sandbox } from './sandbox.js';
export { DEFAULT_API_URL } from './api.js';
export { Commands, CommandHandle, ChannelSink, } from './commands.js';
export { Filesystem } from './files.js';
export { Pty, PtyHandle, DEFAULT_PTY_TIMEOUT_MS } from './pty.js';
export { WatchHandle } from './files-watch.js';
export { FileType, FilesystemEventType, } from './files-types.js';
export { AgentConnection, } from './agent.js';
export { AgentClient } from './agent-client.js';
export { SandboxError, AuthenticationError, NotFoundError, InvalidArgumentError, FileNotFoundError, PermissionError, FileExistsError, NotEnoughSpaceError, ConnectionError, TimeoutError, CommandExitError, } from './errors.js';
//# sourceMappingURL=index.js.map