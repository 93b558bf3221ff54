"use strict";
Object.defineProperty(exports, "__esModule", { value: true });
exports.AgentClient = void 0;
/** Talk to a sandbox agent directly, given its {host, port, token}, without the server. */
const agent_js_1 = require("./agent.js");
const commands_js_1 = require("./commands.js");
const files_js_1 = require("./files.js");
const pty_js_1 = require("./pty.js");
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
class AgentClient {
    constructor(source, options = {}) {
        this.connection = new agent_js_1.AgentConnection(source, options);
        this.commands = new commands_js_1.Commands(this.connection);
        this.files = new files_js_1.Filesystem(this.connection);
        this.pty = new pty_js_1.Pty(this.commands);
    }
    /** Closes the HTTP/2 connection; commands keep running on the agent. */
    close() {
        this.connection.close();
    }
}
exports.AgentClient = AgentClient;
//# sourceMappingURL=agent-client.js.map