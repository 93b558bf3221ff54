import { type ConnectionInfo } from './agent.js';
export declare const DEFAULT_API_URL = "http://127.0.0.1:3000";
/** How to reach the server. Unset fields come from `SANDSTREAM_API_KEY` / `SANDSTREAM_API_URL`. */
export interface ApiOptions {
    /** API key (default: `SANDSTREAM_API_KEY`). */
    apiKey?: string;
    /** Server URL (default: `SANDSTREAM_API_URL`, else http://127.0.0.1:3000). */
    apiUrl?: string;
    /** Limit for one REST call, in ms (default 30 000). Not a command timeout. */
    requestTimeoutMs?: number;
}
/** A sandbox as the server describes it. */
export interface SandboxInfo {
    /** The sandbox id (`sb-…`). */
    sandboxId: string;
    template: string;
    state: 'running' | 'lost' | 'killed' | string;
    cpu: number;
    memoryMb: number;
    envs: Record<string, string>;
    metadata: Record<string, string>;
    runnerId?: string;
    startedAt: Date;
    /** When the server kills the sandbox unless `setTimeout()` extends it. */
    endAt: Date;
}
export interface WireSandbox {
    id: string;
    template: string;
    state: string;
    cpu: number;
    memoryMb: number;
    envs?: Record<string, string>;
    metadata?: Record<string, string>;
    runnerId?: string;
    createdAt: string;
    expiresAt: string;
}
export declare function toSandboxInfo(w: WireSandbox): SandboxInfo;
export declare class ApiClient {
    readonly apiUrl: string;
    readonly requestTimeoutMs: number;
    private readonly apiKey;
    constructor(options?: ApiOptions);
    request<T>(method: string, path: string, body?: unknown): Promise<T>;
    createSandbox(body: Record<string, unknown>): Promise<WireSandbox>;
    getSandbox(id: string): Promise<WireSandbox>;
    listSandboxes(): Promise<WireSandbox[]>;
    killSandbox(id: string): Promise<void>;
    setTimeout(id: string, timeoutMs: number): Promise<WireSandbox>;
    connection(id: string): Promise<ConnectionInfo>;
}
