/** `Sandbox`: create, connect to, list and kill sandboxes; run commands in them and use their files. */
import { AgentConnection } from './agent.js';
import { ApiClient, toSandboxInfo } from './api.js';
import { Commands } from './commands.js';
import { Filesystem } from './files.js';
import { Pty } from './pty.js';
import { InvalidArgumentError, NotFoundError } from './errors.js';
export class Sandbox {
    constructor(id, api, opts) {
        this.sandboxId = id;
        this.api = api;
        const rewrite = opts.resolveAgentAddress ?? ((i) => i);
        this.agent = new AgentConnection(async () => rewrite(await api.connection(id)), {
            ...opts,
            requestTimeoutMs: api.requestTimeoutMs,
        });
        this.commands = new Commands(this.agent);
        this.files = new Filesystem(this.agent);
        this.pty = new Pty(this.commands);
    }
    /** The sandbox id (same as `sandboxId`). */
    get id() {
        return this.sandboxId;
    }
    static async create(templateOrOpts, maybeOpts) {
        const opts = typeof templateOrOpts === 'string' ? { ...maybeOpts, template: templateOrOpts } : { ...templateOrOpts };
        if (opts.timeoutMs !== undefined && (!Number.isFinite(opts.timeoutMs) || opts.timeoutMs <= 0)) {
            throw new InvalidArgumentError(`timeoutMs must be a positive number of milliseconds, got ${opts.timeoutMs}`);
        }
        const api = new ApiClient(opts);
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
        const api = new ApiClient(opts);
        const info = await api.getSandbox(sandboxId);
        if (info.state === 'killed') {
            throw new NotFoundError(`sandbox ${sandboxId} was killed; create a new one`, { code: 'not_found', httpStatus: 404 });
        }
        return new Sandbox(info.id, api, opts);
    }
    /** Lists this API key's sandboxes that are not killed. */
    static async list(opts = {}) {
        const api = new ApiClient(opts);
        return (await api.listSandboxes()).map(toSandboxInfo);
    }
    /** Kills a sandbox by id. Resolves true if it was killed, false if it did not exist. */
    static async kill(sandboxId, opts = {}) {
        const api = new ApiClient(opts);
        try {
            await api.killSandbox(sandboxId);
            return true;
        }
        catch (e) {
            if (e instanceof NotFoundError)
                return false;
            throw e;
        }
    }
    /** Sets a sandbox's remaining lifetime to `timeoutMs` from now. */
    static async setTimeout(sandboxId, timeoutMs, opts = {}) {
        checkTimeout(timeoutMs);
        await new ApiClient(opts).setTimeout(sandboxId, Math.ceil(timeoutMs));
    }
    /** Describes a sandbox by id. */
    static async getInfo(sandboxId, opts = {}) {
        return toSandboxInfo(await new ApiClient(opts).getSandbox(sandboxId));
    }
    /** Kills this sandbox (its commands end) and closes the connection to it. Resolves false if it was already gone. */
    async kill() {
        this.agent.close();
        try {
            await this.api.killSandbox(this.sandboxId);
            return true;
        }
        catch (e) {
            if (e instanceof NotFoundError)
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
        return toSandboxInfo(await this.api.getSandbox(this.sandboxId));
    }
    /** Whether the sandbox is still running. */
    async isRunning() {
        try {
            return (await this.api.getSandbox(this.sandboxId)).state === 'running';
        }
        catch (e) {
            if (e instanceof NotFoundError)
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
function checkTimeout(ms) {
    if (!Number.isFinite(ms) || ms <= 0)
        throw new InvalidArgumentError(`timeoutMs must be a positive number of milliseconds, got ${ms}`);
}
//# sourceMappingURL=sandbox.js.map