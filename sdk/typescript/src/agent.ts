/**
 * The connection to one sandbox's agent: one gRPC channel (one HTTP/2 connection) that
 * carries every command of the sandbox, authenticated with the sandbox token.
 */
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import http2 from 'node:http2';
import { AGENT_PROTO_JSON } from './generated/agent-proto.js';
import {
  AuthenticationError,
  ConnectionError,
  InvalidArgumentError,
  NotFoundError,
  SandboxError,
  TimeoutError,
} from './errors.js';

/** Where a sandbox's agent listens and the token that opens it (`GET /api/v1/sandboxes/{id}/connection`). */
export interface ConnectionInfo {
  host: string;
  port: number;
  token: string;
}

/** Options of the agent connection. All durations are in milliseconds. */
export interface AgentConnectionOptions {
  /**
   * Limit for one request: a unary agent RPC (`Start`, `List`, `Signal`, …), the wait for
   * the agent to confirm a command started, and every REST call. Not a limit on how long a
   * command may run (that is the command's `timeoutMs`). Default 30 000.
   */
  requestTimeoutMs?: number;
  /**
   * How long the SDK keeps trying to reconnect and resume a command's output after the
   * connection dropped, before it gives up with a `ConnectionError`. Default 60 000.
   */
  recoveryTimeoutMs?: number;
  /** HTTP/2 keepalive ping interval (`grpc.keepalive_time_ms`). Default 15 000. */
  keepaliveTimeMs?: number;
  /** How long to wait for a keepalive ping's answer (`grpc.keepalive_timeout_ms`). Default 10 000. */
  keepaliveTimeoutMs?: number;
  /**
   * A command stream that carries nothing (the agent sends a keepalive message every 10 s
   * on a silent stream) for this long is treated as a dead connection and resumed. Default 45 000.
   */
  streamIdleTimeoutMs?: number;
  /**
   * Largest HTTP/2 frame the agent may send (SETTINGS_MAX_FRAME_SIZE), 16 384 to 16 777 215.
   * Default 1 MiB, as PROTOCOL.md recommends: bulk output then costs the agent and this
   * process far less CPU. grpc-js has no option for it, so the SDK adds the setting to the
   * HTTP/2 sessions that grpc-js opens to this agent's address (and to no other). 0 leaves
   * HTTP/2's default of 16 KiB.
   */
  maxFrameSize?: number;
  /** HTTP/2 flow-control window advertised to the agent (`grpc-node.flow_control_window`). Default 16 MiB. */
  flowControlWindowBytes?: number;
  /** Extra grpc-js channel options, merged over the SDK's. */
  channelOptions?: grpc.ChannelOptions;
}

export const DEFAULT_REQUEST_TIMEOUT_MS = 30_000;
export const DEFAULT_RECOVERY_TIMEOUT_MS = 60_000;

const PROTO_OPTIONS: protoLoader.Options = {
  keepCase: false,
  longs: Number,
  enums: Number,
  defaults: true,
  oneofs: true,
};

/** The agent's services: `exec` (commands) and `file` (files, protocol v1.3). */
export type AgentService = 'exec' | 'file';

let serviceCtors: Record<AgentService, grpc.ServiceClientConstructor> | undefined;
function serviceClients(): Record<AgentService, grpc.ServiceClientConstructor> {
  if (!serviceCtors) {
    const def = protoLoader.fromJSON(AGENT_PROTO_JSON as never, PROTO_OPTIONS);
    const pkg = grpc.loadPackageDefinition(def) as unknown as {
      sandstream: { agent: { v1: { ExecService: grpc.ServiceClientConstructor; FileService: grpc.ServiceClientConstructor } } };
    };
    serviceCtors = { exec: pkg.sandstream.agent.v1.ExecService, file: pkg.sandstream.agent.v1.FileService };
  }
  return serviceCtors;
}

/** Wire enums (numbers, as proto-loader gives them). */
export const EventKind = { OUTPUT: 0, STARTED: 1, KEEPALIVE: 2, END: 3, TRUNCATED: 4, SESSION_OPENED: 5 } as const;
export const OutputChannel = { STDOUT: 0, STDERR: 1 } as const;
export const OutputEncoding = { TEXT: 0, BYTES: 1 } as const;
export const ExitStatus = { UNSPECIFIED: 0, EXITED: 1, SIGNALED: 2, TIMED_OUT: 3, FAILED: 4 } as const;

/** A `CommandOutput` message as proto-loader decodes it. */
export interface WireOutput {
  line: string;
  channel: number;
  end: boolean;
  exitCode: number;
  data: Buffer;
  offset: number;
  commandId: string;
  kind: number;
  status: number;
  signal: number;
  error: string;
  stdoutBytes: number;
  stderrBytes: number;
  truncated: boolean;
  pid: number;
  oomKilled: boolean;
  outputLimitReached: boolean;
}

export interface WireExecuteRequest {
  command: string;
  cwd?: string;
  env?: Record<string, string>;
  timeout?: number;
  encoding?: number;
  stdin?: Uint8Array;
  keepStdinOpen?: boolean;
  outputLimitBytes?: number;
  user?: string;
  pty?: { cols: number; rows: number };
}

export interface WireCommandInfo {
  commandId: string;
  command: string;
  cwd: string;
  pid: number;
  running: boolean;
  status: number;
  exitCode: number;
  signal: number;
  stdoutBytes: number;
  stderrBytes: number;
  startedAtMs: number;
  finishedAtMs: number;
  truncated: boolean;
  error: string;
  oomKilled: boolean;
  user: string;
  pty?: { cols: number; rows: number } | null;
}

export type AnyClient = grpc.Client & Record<string, (...args: unknown[]) => unknown>;

/** Where the connection gets its {host, port, token}: fixed, or fetched (and fetched again after a failure). */
export type ConnectionSource = ConnectionInfo | (() => Promise<ConnectionInfo>);

/**
 * One HTTP/2 connection to a sandbox agent. Created lazily on the first call; all
 * commands of the sandbox share it. `refresh()` fetches the connection info again (when a
 * provider was given) and switches to the new address or token if it changed.
 */
export class AgentConnection {
  readonly options: Required<Omit<AgentConnectionOptions, 'channelOptions'>> & { channelOptions: grpc.ChannelOptions };
  private info?: ConnectionInfo;
  private client?: AnyClient;
  /** The FileService client, on the same channel (the same HTTP/2 connection) as `client`. */
  private fileClient?: AnyClient;
  private metadata?: grpc.Metadata;
  private pending?: Promise<void>;
  private closed = false;
  private readonly provider?: () => Promise<ConnectionInfo>;

  constructor(source: ConnectionSource, options: AgentConnectionOptions = {}) {
    if (typeof source === 'function') this.provider = source;
    else this.info = validateInfo(source);
    this.options = {
      requestTimeoutMs: options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS,
      recoveryTimeoutMs: options.recoveryTimeoutMs ?? DEFAULT_RECOVERY_TIMEOUT_MS,
      keepaliveTimeMs: options.keepaliveTimeMs ?? 15_000,
      keepaliveTimeoutMs: options.keepaliveTimeoutMs ?? 10_000,
      streamIdleTimeoutMs: options.streamIdleTimeoutMs ?? 45_000,
      flowControlWindowBytes: options.flowControlWindowBytes ?? 16 * 1024 * 1024,
      maxFrameSize: options.maxFrameSize ?? 1024 * 1024,
      channelOptions: options.channelOptions ?? {},
    };
  }

  /** The address currently in use, for messages (`host:port`, or `(not connected)`). */
  get address(): string {
    return this.info ? `${formatHost(this.info.host)}:${this.info.port}` : '(not connected yet)';
  }

  /** The connection info currently in use, fetching it first if needed. */
  async connectionInfo(): Promise<ConnectionInfo> {
    await this.ensure();
    return { ...this.info! };
  }

  private async ensure(): Promise<void> {
    if (this.closed) throw new SandboxError('this sandbox connection was closed; connect to the sandbox again');
    if (this.client) return;
    if (!this.info) {
      this.pending ??= this.provider!()
        .then((info) => {
          this.info = validateInfo(info);
        })
        .finally(() => {
          this.pending = undefined;
        });
      await this.pending;
    }
    if (!this.client) this.open();
  }

  private open(): void {
    const info = this.info!;
    const ctors = serviceClients();
    const o = this.options;
    const channelOptions: grpc.ChannelOptions = {
      'grpc.keepalive_time_ms': o.keepaliveTimeMs,
      'grpc.keepalive_timeout_ms': o.keepaliveTimeoutMs,
      'grpc.keepalive_permit_without_calls': 1,
      'grpc.max_receive_message_length': -1,
      'grpc.max_send_message_length': -1,
      'grpc-node.flow_control_window': o.flowControlWindowBytes,
      'grpc.initial_reconnect_backoff_ms': 100,
      'grpc.max_reconnect_backoff_ms': 2_000,
      'grpc.enable_retries': 0,
      // Our own connection, not shared with other channels to the same address.
      'grpc.use_local_subchannel_pool': 1,
      ...o.channelOptions,
    };
    const target = `${formatHost(info.host)}:${info.port}`;
    if (o.maxFrameSize) registerFrameSize(target, o.maxFrameSize);
    this.client = new ctors.exec(
      target,
      grpc.credentials.createInsecure(),
      channelOptions,
    ) as unknown as AnyClient;
    this.fileClient = new ctors.file(target, grpc.credentials.createInsecure(), {
      channelOverride: this.client.getChannel(),
    }) as unknown as AnyClient;
    const md = new grpc.Metadata();
    md.set('authorization', `Bearer ${info.token}`);
    this.metadata = md;
  }

  /**
   * Fetches the connection info again (if it comes from a provider) and reconnects if it
   * changed. Concurrent callers share one fetch. Without a provider, nothing happens.
   */
  async refresh(): Promise<void> {
    if (!this.provider || this.closed) return;
    this.pending ??= this.provider()
      .then((fresh) => {
        const next = validateInfo(fresh);
        const cur = this.info;
        if (!cur || cur.host !== next.host || cur.port !== next.port || cur.token !== next.token) {
          const old = this.client;
          this.info = next;
          this.client = undefined;
          this.fileClient = undefined;
          old?.close();
        }
      })
      .finally(() => {
        this.pending = undefined;
      });
    await this.pending;
  }

  /** Closes the connection. Streams in progress fail; the commands keep running in the sandbox. */
  close(): void {
    this.closed = true;
    this.client?.close();
    this.client = undefined;
    this.fileClient = undefined;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /**
   * Waits until the HTTP/2 connection is up, at most `withinMs`. Costs nothing when it is
   * (the common case); otherwise the first call does not fail just because the sandbox's
   * agent is still starting, or the connection is being re-established.
   */
  private async whenReady(client: AnyClient, withinMs: number): Promise<void> {
    const channel = client.getChannel();
    if (channel.getConnectivityState(true) === grpc.connectivityState.READY) return;
    await new Promise<void>((resolve, reject) => {
      client.waitForReady(Date.now() + Math.max(1, withinMs), (err?: Error) => {
        if (!err) return resolve();
        reject(
          new ConnectionError(
            `cannot connect to the sandbox agent at ${this.address} within ${Math.round(withinMs)} ms (${err.message}). ` +
              'Check that the sandbox is still running (Sandbox.list()) and that this machine can reach that address.',
            { code: 'UNAVAILABLE', cause: err },
          ),
        );
      });
    });
  }

  /** Opens a server stream (`Execute`, `Attach`) once connected (waiting at most `readyWithinMs`). */
  async stream(method: 'Execute' | 'Attach', request: object, readyWithinMs = this.options.requestTimeoutMs): Promise<grpc.ClientReadableStream<WireOutput>> {
    await this.ensure();
    const client = this.client!;
    const metadata = this.metadata!;
    await this.whenReady(client, readyWithinMs);
    return client[method]!(request, metadata) as grpc.ClientReadableStream<WireOutput>;
  }

  /**
   * The client of `service` and the call metadata, once connected (waiting at most
   * `readyWithinMs`), for calls that manage their own streams.
   */
  async service(service: AgentService, readyWithinMs = this.options.requestTimeoutMs): Promise<{ client: AnyClient; metadata: grpc.Metadata }> {
    await this.ensure();
    const client = this.client!;
    const metadata = this.metadata!;
    await this.whenReady(client, readyWithinMs);
    return { client: service === 'file' ? this.fileClient! : client, metadata };
  }

  /**
   * A unary call with the request deadline (`opts.timeoutMs`, default `requestTimeoutMs`);
   * errors are mapped to SDK errors (by `opts.mapError`, default {@link mapError}).
   */
  async unary<T>(
    method: string,
    request: object,
    what: string,
    opts: { service?: AgentService; timeoutMs?: number; mapError?: (err: unknown, what: string) => SandboxError } = {},
  ): Promise<T> {
    const timeoutMs = opts.timeoutMs ?? this.options.requestTimeoutMs;
    const map = opts.mapError ?? ((e: unknown, w: string) => this.mapError(e, w, timeoutMs));
    const deadline = Date.now() + timeoutMs;
    let client: AnyClient;
    let metadata: grpc.Metadata;
    try {
      ({ client, metadata } = await this.service(opts.service ?? 'exec', timeoutMs));
    } catch (e) {
      throw map(e, what);
    }
    return new Promise<T>((resolve, reject) => {
      client[method]!(request, metadata, { deadline }, (err: grpc.ServiceError | null, res: T) => {
        if (err) reject(map(err, what));
        else resolve(res);
      });
    });
  }

  /** Turns a gRPC error into an SDK error whose message says what to do. */
  mapError(err: unknown, what: string, timeoutMs = this.options.requestTimeoutMs): SandboxError {
    if (err instanceof ConnectionError && !err.message.startsWith(what)) {
      return new ConnectionError(`${what}: ${err.message}`, { code: err.code, cause: (err as { cause?: unknown }).cause });
    }
    if (err instanceof SandboxError) return err;
    const e = err as Partial<grpc.ServiceError>;
    const code = typeof e.code === 'number' ? e.code : undefined;
    const details = e.details || (err as Error)?.message || String(err);
    const name = code !== undefined ? grpc.status[code] : undefined;
    const opts = { code: name, cause: err };
    switch (code) {
      case grpc.status.UNAUTHENTICATED:
      case grpc.status.PERMISSION_DENIED:
        return new AuthenticationError(
          `${what}: the sandbox agent at ${this.address} refused the token (${name}: ${details}). ` +
            'Use the token from GET /api/v1/sandboxes/{id}/connection for this very sandbox; Sandbox.connect(id) fetches it for you.',
          opts,
        );
      case grpc.status.NOT_FOUND:
        return new NotFoundError(`${what}: ${details}`, opts);
      case grpc.status.INVALID_ARGUMENT:
      case grpc.status.OUT_OF_RANGE:
      case grpc.status.FAILED_PRECONDITION:
        return new InvalidArgumentError(`${what}: ${details}`, opts);
      case grpc.status.DEADLINE_EXCEEDED:
        return new TimeoutError(
          `${what}: the sandbox agent at ${this.address} did not answer within requestTimeoutMs (${timeoutMs} ms). ` +
            'This is the request timeout, not the command timeout; raise requestTimeoutMs if the sandbox is just slow.',
          'request',
          opts,
        );
      case grpc.status.UNAVAILABLE:
        return new ConnectionError(
          `${what}: cannot reach the sandbox agent at ${this.address} (${details}). ` +
            'Check that the sandbox is still running (Sandbox.list()) and that this machine can reach that address.',
          opts,
        );
      default:
        return new SandboxError(`${what}: the sandbox agent at ${this.address} failed (${name ?? 'error'}: ${details})`, opts);
    }
  }
}

/** Errors after which a command stream is resumed rather than failed. */
export function isTransient(err: unknown): boolean {
  const code = (err as { code?: unknown })?.code;
  if (err instanceof ConnectionError) return true;
  if (err instanceof SandboxError) return false;
  return (
    code === grpc.status.UNAVAILABLE ||
    code === grpc.status.INTERNAL ||
    code === grpc.status.UNKNOWN ||
    code === grpc.status.CANCELLED ||
    code === grpc.status.RESOURCE_EXHAUSTED
  );
}

/*
 * grpc-js opens its HTTP/2 sessions with http2.connect() and offers no option for
 * SETTINGS_MAX_FRAME_SIZE. We wrap http2.connect once: for an authority (host:port) that an
 * AgentConnection registered, and only when the caller set no maxFrameSize itself, the
 * session also advertises the registered frame size. Every other http2 session of the
 * process is left untouched.
 */
const frameSizes = new Map<string, number>();
let http2Wrapped = false;

function registerFrameSize(authority: string, size: number): void {
  if (!Number.isInteger(size) || size < 16_384 || size > 16_777_215) {
    throw new InvalidArgumentError(`maxFrameSize must be an integer from 16384 to 16777215 (or 0), got ${size}`);
  }
  frameSizes.set(authority.toLowerCase(), size);
  if (http2Wrapped) return;
  http2Wrapped = true;
  const mod = http2 as unknown as { connect: (...args: unknown[]) => unknown };
  const original = mod.connect;
  mod.connect = function connect(this: unknown, authority: unknown, ...rest: unknown[]) {
    try {
      const host = (typeof authority === 'string' ? new URL(authority) : (authority as URL)).host.toLowerCase();
      const size = frameSizes.get(host);
      const options = rest[0];
      if (size && options && typeof options === 'object' && typeof options !== 'function') {
        const o = options as { settings?: { maxFrameSize?: number } };
        if (o.settings?.maxFrameSize === undefined) {
          rest[0] = { ...o, settings: { ...o.settings, maxFrameSize: size } };
        }
      }
    } catch {
      /* not a URL we know: leave the call as it is */
    }
    return original.call(this, authority, ...rest);
  };
}

function formatHost(host: string): string {
  return host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
}

function validateInfo(info: ConnectionInfo): ConnectionInfo {
  if (!info || typeof info.host !== 'string' || !info.host || !Number.isInteger(info.port) || typeof info.token !== 'string') {
    throw new SandboxError(
      `invalid connection info ${JSON.stringify(info && { ...info, token: info.token ? '…' : info.token })}: expected {host, port, token}`,
    );
  }
  return { host: info.host, port: info.port, token: info.token };
}
