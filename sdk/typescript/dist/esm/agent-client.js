/** Talk to a sandbox agent directly, given its {host, port, token}, without the server. */
import { AgentConnection } from './agent.js';
import { Commands } from './commands.js';
import { Filesystem } from './files.js';
import { Pty } from './pty.js';
/**
 * A client for one agent, without the Sandstream server: useful when you already have the
 * connection info (or a function that fetches it).
 *
 * ```ts
 * const agent = new AgentClient({ host: '127.0.0.1', port: 50052, token })
 * const { stdout } = await agent.commands.run('echo hi')
 * agent.close()
 * ```
 */
export class AgentClient {
    constructor(source, options = {}) {
        this.connection = new AgentConnection(source, options);
        this.commands = new Commands(this.connection);
        this.files = new Filesystem(this.connection);
        this.pty = new Pty(this.commands);
    }
    /** Closes the HTTP/2 connection; commands keep running on the agent. */
    close() {
        this.connection.close();
    }
}
//# sourceMappingURL=agent-client.js.map