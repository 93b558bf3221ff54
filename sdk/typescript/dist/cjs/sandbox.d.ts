/** `Sandbox`: create, connect to, list and kill sandboxes; run commands in them and use their files. */
import { type AgentConnectionOptions, type ConnectionInfo } from './agent.js';
import { type ApiOptions, type SandboxInfo } from './api.js';
import { Commands } from './commands.js';
import { Filesystem } from './files.js';
import { Pty } from './pty.js';
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
export declare class Sandbox {
    /** The sandbox id (`sb-…`). */
    readonly sandboxId: string;
    /** Run and follow commands. All of them share one HTTP/2 connection to the sandbox's agent. */
    readonly commands: Commands;
    /** Read, write, list and watch the sandbox's files, on the same connection. */
    readonly files: Filesystem;
    /** Interactive terminals (pseudo-terminals), on the same connection. */
    readonly pty: Pty;
    private readonly api;
    private readonly agent;
    private constructor();
    /** The sandbox id (same as `sandboxId`). */
    get id(): string;
    /**
     * Creates a sandbox and resolves once it runs.
     *
     * ```ts
     * const sandbox = await Sandbox.create({ timeoutMs: 600_000, envs: { FOO: 'bar' } })
     * const sandbox2 = await Sandbox.create('default', { metadata: { user: 'alice' } })
     * ```
     */
    static create(opts?: SandboxOpts): Promise<Sandbox>;
    static create(template: string, opts?: SandboxOpts): Promise<Sandbox>;
    /**
     * Connects to an existing sandbox by id. Rejects with `NotFoundError` if it does not
     * exist (or belongs to another tenant), and with `SandboxError` if it was killed.
     */
    static connect(sandboxId: string, opts?: SandboxConnectOptions): Promise<Sandbox>;
    /** Lists this API key's sandboxes that are not killed. */
    static list(opts?: ApiOptions): Promise<SandboxInfo[]>;
    /** Kills a sandbox by id. Resolves true if it was killed, false if it did not exist. */
    static kill(sandboxId: string, opts?: ApiOptions): Promise<boolean>;
    /** Sets a sandbox's remaining lifetime to `timeoutMs` from now. */
    static setTimeout(sandboxId: string, timeoutMs: number, opts?: ApiOptions): Promise<void>;
    /** Describes a sandbox by id. */
    static getInfo(sandboxId: string, opts?: ApiOptions): Promise<SandboxInfo>;
    /** Kills this sandbox (its commands end) and closes the connection to it. Resolves false if it was already gone. */
    kill(): Promise<boolean>;
    /** The sandbox now expires `timeoutMs` from now (longer or shorter than before). */
    setTimeout(timeoutMs: number): Promise<void>;
    /** The server's description of this sandbox. */
    getInfo(): Promise<SandboxInfo>;
    /** Whether the sandbox is still running. */
    isRunning(): Promise<boolean>;
    /** The agent address and token this SDK uses (fetched from the server). */
    getConnectionInfo(): Promise<ConnectionInfo>;
    /** Closes the connection to the agent without killing the sandbox. */
    close(): void;
}
