"use strict";
Object.defineProperty(exports, "__esModule", { value: true });
exports.Sandbox = void 0;
/** `Sandbox`: create, connect to, list and kill sandboxes; run commands in them and use their files. */
const agent_js_1 = require("./agent.js");
const api_js_1 = require("./api.js");
const commands_js_1 = require("./commands.js");
const files_js_1 = require("./files.js");
const pty_js_1 = require("./pty.js");
const errors_js_1 = require("./errors.js");
class Sandbox {
    constructor(id, api, opts) {
        this.sandboxId = id;
        this.api = api;
        const rewrite = opts.resolveAgentAddress ?? ((i) => i);
        this.agent = new agent_js_1.AgentConnection(async () => rewrite(await api.connection(id)), {
            ...opts,
            requestTimeoutMs: api.requestTimeoutMs,
        });
        this.commands = new commands_js_1.Commands(this.agent);
        this.files = new files_js_1.Filesystem(this.agent);
        this.pty = new pty_js_1.Pty(this.commands);
    }
    /** The sandbox id (same as `sandboxId`). */
    get id() {
        return this.sandboxId;
    }
    static async create(templateOrOpts, maybeOpts) {
        const opts = typeof templateOrOpts === 'string' ? { ...maybeOpts, template: templateOrOpts } : { ...templateOrOpts };
        if (opts.timeoutMs !== undefined && (!Number.isFinite(opts.timeoutMs) || opts.timeoutMs <= 0)) {
            throw new errors_js_1.InvalidArgumentError(`timeoutMs must be a positive number of milliseconds, got ${opts.timeoutMs}`);
        }
        const api = new api_js_1.ApiClient(opts);
        const body = {};
        if (opts.template !== undefined)
            body.template = opts.template;
        if (opts.timeoutMs !== undefined)
            body.timeoutMs = Math.ceil(opts.timeoutMs);
        if (opts.envs !== undefined)
            body.envs = opts.envs;
        if (opts.metadata !== undefined)
            body.metadata = opts.metadata;
        if (opts.cpu !== undefined)
            body.cpu = opts.cpu;
        if (opts.memoryMb !== undefined)
            body.memoryMb = opts.memoryMb;
        const created = await api.createSandbox(body);
        return new Sandbox(created.id, api, opts);
    }
    /**
     * Connects to an existing sandbox by id. Rejects with `NotFoundError` if it does not
     * exist (or belongs to another tenant), and with `SandboxError` if it was killed.
     */
    static async connect(sandboxId, opts = {}) {
        const api = new api_js_1.ApiClient(opts);
        const info = await api.getSandbox(sandboxId);
        if (info.state === 'killed') {
            throw new errors_js_1.NotFoundError(`sandbox ${sandboxId} was killed; create a new one`, { code: 'not_found', httpStatus: 404 });
        }
        return new Sandbox(info.id, api, opts);
    }
    /** Lists this API key's sandboxes that are not killed. */
    static async list(opts = {}) {
        const api = new api_js_1.ApiClient(opts);
        return (await api.listSandboxes()).map(api_js_1.toSandboxInfo);
    }
    /** Kills a sandbox by id. Resolves true if it was killed, false if it did not exist. */
    static async kill(sandboxId, opts = {}) {
        const api = new api_js_1.ApiClient(opts);
        try {
            await api.killSandbox(sandboxId);
            return true;
        }
        catch (e) {
            if (e instanceof errors_js_1.NotFoundError)
                return false;
            throw e;
        }
    }
    /** Sets a sandbox's remaining lifetime to `timeoutMs` from now. */
    static async setTimeout(sandboxId, timeoutMs, opts = {}) {
        checkTimeout(timeoutMs);
        await new api_js_1.ApiClient(opts).setTimeout(sandboxId, Math.ceil(timeoutMs));
    }
    /** Describes a sandbox by id. */
    static async getInfo(sandboxId, opts = {}) {
        return (0, api_js_1.toSandboxInfo)(await new api_js_1.ApiClient(opts).getSandbox(sandboxId));
    }
    /** Kills this sandbox (its commands end) and closes the connection to it. Resolves false if it was already gone. */
    async kill() {
        this.agent.close();
        try {
            await this.api.killSandbox(this.sandboxId);
            return true;
        }
        catch (e) {
            if (e instanceof errors_js_1.NotFoundError)
                return false;
            throw e;
        }
    }
    /** The sandbox now expires `timeoutMs` from now (longer or shorter than before). */
    async setTimeout(timeoutMs) {
        checkTimeout(timeoutMs);
        await this.api.setTimeout(this.sandboxId, Math.ceil(timeoutMs));
    }
    /** The server's description of this sandbox. */
    async getInfo() {
        return (0, api_js_1.toSandboxInfo)(await this.api.getSandbox(this.sandboxId));
    }
    /** Whether the sandbox is still running. */
    async isRunning() {
        try {
            return (await this.api.getSandbox(this.sandboxId)).state === 'running';
        }
        catch (e) {
            if (e instanceof errors_js_1.NotFoundError)
                return false;
            throw e;
        }
    }
    /** The agent address and token this SDK uses (fetched from the server). */
    getConnectionInfo() {
        return this.agent.connectionInfo();
    }
    /** Closes the connection to the agent without killing the sandbox. */
    close() {
        this.agent.close();
    }
}
exports.Sandbox = Sandbox;
function checkTimeout(ms) {
    if (!Number.isFinite(ms) || ms <= 0)
        throw new errors_js_1.InvalidArgumentError(`timeoutMs must be a positive number of milliseconds, got ${ms}`);
}
//# sourceMappingURL=sandbox.js.map