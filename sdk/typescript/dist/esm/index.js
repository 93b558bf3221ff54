export { Sandbox } from './sandbox.js';
export { DEFAULT_API_URL } from './api.js';
export { Commands, CommandHandle, ChannelSink, } from './commands.js';
export { AgentConnection, } from './agent.js';
export { AgentClient } from './agent-client.js';
export { SandboxError, AuthenticationError, NotFoundError, InvalidArgumentError, ConnectionError, TimeoutError, CommandExitError, } from './errors.js';
//# sourceMappingURL=index.js.map