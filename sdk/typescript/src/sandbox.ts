/** `Sandbox`: create, connect to, list and kill sandboxes; run commands in them and use their files. */
import { AgentConnection, type AgentConnectionOptions, type ConnectionInfo } from './agent.js';
import { ApiClient, toSandboxInfo, type ApiOptions, type SandboxInfo } from './api.js';
import { Commands } from './commands.js';
import { Filesystem } from './files.js';
import { Pty } from './pty.js';
import { InvalidArgumentError, NotFoundError } from './errors.js';

/** Options shared by every `Sandbox` call: how to reach the server and the agent. */
export interface SandboxConnectOptions extends ApiOptions, Omit<AgentConnectionOptions, 'requestTimeoutMs'> {
  /**
   * Rewrites the agent address the server returns before connecting (for instance to go
   * through an SSH tunnel or a proxy). Gets and returns `{host, port, token}`.
   */
  resolveAgentAddress?: (info: ConnectionInfo) => ConnectionInfo;
}

/** Options of `Sandbox.create()`. */
export interface SandboxOpts extends SandboxConnectOptions {
  /** Template name (default `"default"`). */
  template?: string;
  /** Sandbox lifetime in ms from now (default 300 000); extend it with `setTimeout()`. */
  timeoutMs?: number;
  /** Environment variables of every command in the sandbox. */
  envs?: Record<string, string>;
  /** Your own labels, returned by `Sandbox.list()`. */
  metadata?: Record<string, string>;
  /** CPU cores (default 2). */
  cpu?: number;
  /** Memory in MiB (default 512). */
  memoryMb?: number;
}

export class Sandbox {
  /** The sandbox id (`sb-…`). */
  readonly sandboxId: string;
  /** Run and follow commands. All of them share one HTTP/2 connection to the sandbox's agent. */
  readonly commands: Commands;
  /** Read, write, list and watch the sandbox's files, on the same connection. */
  readonly files: Filesystem;
  /** Interactive terminals (pseudo-terminals), on the same connection. */
  readonly pty: Pty;
  private readonly api: ApiClient;
  private readonly agent: AgentConnection;

  private constructor(id: string, api: ApiClient, opts: SandboxConnectOptions) {
    this.sandboxId = id;
    this.api = api;
    const rewrite = opts.resolveAgentAddress ?? ((i: ConnectionInfo) => i);
    this.agent = new AgentConnection(async () => rewrite(await api.connection(id)), {
      ...opts,
      requestTimeoutMs: api.requestTimeoutMs,
    });
    this.commands = new Commands(this.agent);
    this.files = new Filesystem(this.agent);
    this.pty = new Pty(this.commands);
  }

  /** The sandbox id (same as `sandboxId`). */
  get id(): string {
    return this.sandboxId;
  }

  /**
   * Creates a sandbox and resolves once it runs.
   *
   * ```ts
   * const sandbox = await Sandbox.create({ timeoutMs: 600_000, envs: { FOO: 'bar' } })
   * const sandbox2 = await Sandbox.create('default', { metadata: { user: 'alice' } })
   * ```
   */
  static async create(opts?: SandboxOpts): Promise<Sandbox>;
  static async create(template: string, opts?: SandboxOpts): Promise<Sandbox>;
  static async create(templateOrOpts?: string | SandboxOpts, maybeOpts?: SandboxOpts): Promise<Sandbox> {
    const opts: SandboxOpts =
      typeof templateOrOpts === 'string' ? { ...maybeOpts, template: templateOrOpts } : { ...templateOrOpts };
    if (opts.timeoutMs !== undefined && (!Number.isFinite(opts.timeoutMs) || opts.timeoutMs <= 0)) {
      throw new InvalidArgumentError(`timeoutMs must be a positive number of milliseconds, got ${opts.timeoutMs}`);
    }
    const api = new ApiClient(opts);
    const body: Record<string, unknown> = {};
    if (opts.template !== undefined) body.template = opts.template;
    if (opts.timeoutMs !== undefined) body.timeoutMs = Math.ceil(opts.timeoutMs);
    if (opts.envs !== undefined) body.envs = opts.envs;
    if (opts.metadata !== undefined) body.metadata = opts.metadata;
    if (opts.cpu !== undefined) body.cpu = opts.cpu;
    if (opts.memoryMb !== undefined) body.memoryMb = opts.memoryMb;
    const created = await api.createSandbox(body);
    return new Sandbox(created.id, api, opts);
  }

  /**
   * Connects to an existing sandbox by id. Rejects with `NotFoundError` if it does not
   * exist (or belongs to another tenant), and with `SandboxError` if it was killed.
   */
  static async connect(sandboxId: string, opts: SandboxConnectOptions = {}): Promise<Sandbox> {
    const api = new ApiClient(opts);
    const info = await api.getSandbox(sandboxId);
    if (info.state === 'killed') {
      throw new NotFoundError(`sandbox ${sandboxId} was killed; create a new one`, { code: 'not_found', httpStatus: 404 });
    }
    return new Sandbox(info.id, api, opts);
  }

  /** Lists this API key's sandboxes that are not killed. */
  static async list(opts: ApiOptions = {}): Promise<SandboxInfo[]> {
    const api = new ApiClient(opts);
    return (await api.listSandboxes()).map(toSandboxInfo);
  }

  /** Kills a sandbox by id. Resolves true if it was killed, false if it did not exist. */
  static async kill(sandboxId: string, opts: ApiOptions = {}): Promise<boolean> {
    const api = new ApiClient(opts);
    try {
      await api.killSandbox(sandboxId);
      return true;
    } catch (e) {
      if (e instanceof NotFoundError) return false;
      throw e;
    }
  }

  /** Sets a sandbox's remaining lifetime to `timeoutMs` from now. */
  static async setTimeout(sandboxId: string, timeoutMs: number, opts: ApiOptions = {}): Promise<void> {
    checkTimeout(timeoutMs);
    await new ApiClient(opts).setTimeout(sandboxId, Math.ceil(timeoutMs));
  }

  /** Describes a sandbox by id. */
  static async getInfo(sandboxId: string, opts: ApiOptions = {}): Promise<SandboxInfo> {
    return toSandboxInfo(await new ApiClient(opts).getSandbox(sandboxId));
  }

  /** Kills this sandbox (its commands end) and closes the connection to it. Resolves false if it was already gone. */
  async kill(): Promise<boolean> {
    this.agent.close();
    try {
      await this.api.killSandbox(this.sandboxId);
      return true;
    } catch (e) {
      if (e instanceof NotFoundError) return false;
      throw e;
    }
  }

  /** The sandbox now expires `timeoutMs` from now (longer or shorter than before). */
  async setTimeout(timeoutMs: number): Promise<void> {
    checkTimeout(timeoutMs);
    await this.api.setTimeout(this.sandboxId, Math.ceil(timeoutMs));
  }

  /** The server's description of this sandbox. */
  async getInfo(): Promise<SandboxInfo> {
    return toSandboxInfo(await this.api.getSandbox(this.sandboxId));
  }

  /** Whether the sandbox is still running. */
  async isRunning(): Promise<boolean> {
    try {
      return (await this.api.getSandbox(this.sandboxId)).state === 'running';
    } catch (e) {
      if (e instanceof NotFoundError) return false;
      throw e;
    }
  }

  /** The agent address and token this SDK uses (fetched from the server). */
  getConnectionInfo(): Promise<ConnectionInfo> {
    return this.agent.connectionInfo();
  }

  /** Closes the connection to the agent without killing the sandbox. */
  close(): void {
    this.agent.close();
  }
}

function checkTimeout(ms: number): void {
  if (!Number.isFinite(ms) || ms <= 0) throw new InvalidArgumentError(`timeoutMs must be a positive number of milliseconds, got ${ms}`);
}
