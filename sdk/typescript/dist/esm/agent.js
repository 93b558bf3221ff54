/**
 * The connection to one sandbox's agent: one gRPC channel (one HTTP/2 connection) that
 * carries every command of the sandbox, authenticated with the sandbox token.
 */
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import http2 from 'node:http2';
import { AGENT_PROTO_JSON } from './generated/agent-proto.js';
import { AuthenticationError, ConnectionError, InvalidArgumentError, NotFoundError, SandboxError, TimeoutError, } from './errors.js';
export const DEFAULT_REQUEST_TIMEOUT_MS = 30_000;
export const DEFAULT_RECOVERY_TIMEOUT_MS = 60_000;
const PROTO_OPTIONS = {
    keepCase: false,
    longs: Number,
    enums: Number,
    defaults: true,
    oneofs: true,
};
let serviceCtors;
function serviceClients() {
    if (!serviceCtors) {
        const def = protoLoader.fromJSON(AGENT_PROTO_JSON, PROTO_OPTIONS);
        const pkg = grpc.loadPackageDefinition(def);
        serviceCtors = { exec: pkg.sandstream.agent.v1.ExecService, file: pkg.sandstream.agent.v1.FileService };
    }
    return serviceCtors;
}
/** Wire enums (numbers, as proto-loader gives them). */
export const EventKind = { OUTPUT: 0, STARTED: 1, KEEPALIVE: 2, END: 3, TRUNCATED: 4, SESSION_OPENED: 5 };
export const OutputChannel = { STDOUT: 0, STDERR: 1 };
export const OutputEncoding = { TEXT: 0, BYTES: 1 };
export const ExitStatus = { UNSPECIFIED: 0, EXITED: 1, SIGNALED: 2, TIMED_OUT: 3, FAILED: 4 };
/**
 * One HTTP/2 connection to a sandbox agent. Created lazily on the first call; all
 * commands of the sandbox share it. `refresh()` fetches the connection info again (when a
 * provider was given) and switches to the new address or token if it changed.
 */
export class AgentConnection {
    constructor(source, options = {}) {
        this.closed = false;
        if (typeof source === 'function')
            this.provider = source;
        else
            this.info = validateInfo(source);
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
    get address() {
        return this.info ? `${formatHost(this.info.host)}:${this.info.port}` : '(not connected yet)';
    }
    /** The connection info currently in use, fetching it first if needed. */
    async connectionInfo() {
        await this.ensure();
        return { ...this.info };
    }
    async ensure() {
        if (this.closed)
            throw new SandboxError('this sandbox connection was closed; connect to the sandbox again');
        if (this.client)
            return;
        if (!this.info) {
            this.pending ??= this.provider()
                .then((info) => {
                this.info = validateInfo(info);
            })
                .finally(() => {
                this.pending = undefined;
            });
            await this.pending;
        }
        if (!this.client)
            this.open();
    }
    open() {
        const info = this.info;
        const ctors = serviceClients();
        const o = this.options;
        const channelOptions = {
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
        if (o.maxFrameSize)
            registerFrameSize(target, o.maxFrameSize);
        this.client = new ctors.exec(target, grpc.credentials.createInsecure(), channelOptions);
        this.fileClient = new ctors.file(target, grpc.credentials.createInsecure(), {
            channelOverride: this.client.getChannel(),
        });
        const md = new grpc.Metadata();
        md.set('authorization', `Bearer ${info.token}`);
        this.metadata = md;
    }
    /**
     * Fetches the connection info again (if it comes from a provider) and reconnects if it
     * changed. Concurrent callers share one fetch. Without a provider, nothing happens.
     */
    async refresh() {
        if (!this.provider || this.closed)
            return;
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
    close() {
        this.closed = true;
        this.client?.close();
        this.client = undefined;
        this.fileClient = undefined;
    }
    get isClosed() {
        return this.closed;
    }
    /**
     * Waits until the HTTP/2 connection is up, at most `withinMs`. Costs nothing when it is
     * (the common case); otherwise the first call does not fail just because the sandbox's
     * agent is still starting, or the connection is being re-established.
     */
    async whenReady(client, withinMs) {
        const channel = client.getChannel();
        if (channel.getConnectivityState(true) === grpc.connectivityState.READY)
            return;
        await new Promise((resolve, reject) => {
            client.waitForReady(Date.now() + Math.max(1, withinMs), (err) => {
                if (!err)
                    return resolve();
                reject(new ConnectionError(`cannot connect to the sandbox agent at ${this.address} within ${Math.round(withinMs)} ms (${err.message}). ` +
                    'Check that the sandbox is still running (Sandbox.list()) and that this machine can reach that address.', { code: 'UNAVAILABLE', cause: err }));
            });
        });
    }
    /** Opens a server stream (`Execute`, `Attach`) once connected (waiting at most `readyWithinMs`). */
    async stream(method, request, readyWithinMs = this.options.requestTimeoutMs) {
        await this.ensure();
        const client = this.client;
        const metadata = this.metadata;
        await this.whenReady(client, readyWithinMs);
        return client[method](request, metadata);
    }
    /**
     * The client of `service` and the call metadata, once connected (waiting at most
     * `readyWithinMs`), for calls that manage their own streams.
     */
    async service(service, readyWithinMs = this.options.requestTimeoutMs) {
        await this.ensure();
        const client = this.client;
        const metadata = this.metadata;
        await this.whenReady(client, readyWithinMs);
        return { client: service === 'file' ? this.fileClient : client, metadata };
    }
    /**
     * A unary call with the request deadline (`opts.timeoutMs`, default `requestTimeoutMs`);
     * errors are mapped to SDK errors (by `opts.mapError`, default {@link mapError}).
     */
    async unary(method, request, what, opts = {}) {
        const timeoutMs = opts.timeoutMs ?? this.options.requestTimeoutMs;
        const map = opts.mapError ?? ((e, w) => this.mapError(e, w, timeoutMs));
        const deadline = Date.now() + timeoutMs;
        let client;
        let metadata;
        try {
            ({ client, metadata } = await this.service(opts.service ?? 'exec', timeoutMs));
        }
        catch (e) {
            throw map(e, what);
        }
        return new Promise((resolve, reject) => {
            client[method](request, metadata, { deadline }, (err, res) => {
                if (err)
                    reject(map(err, what));
                else
                    resolve(res);
            });
        });
    }
    /** Turns a gRPC error into an SDK error whose message says what to do. */
    mapError(err, what, timeoutMs = this.options.requestTimeoutMs) {
        if (err instanceof ConnectionError && !err.message.startsWith(what)) {
            return new ConnectionError(`${what}: ${err.message}`, { code: err.code, cause: err.cause });
        }
        if (err instanceof SandboxError)
            return err;
        const e = err;
        const code = typeof e.code === 'number' ? e.code : undefined;
        const details = e.details || err?.message || String(err);
        const name = code !== undefined ? grpc.status[code] : undefined;
        const opts = { code: name, cause: err };
        switch (code) {
            case grpc.status.UNAUTHENTICATED:
            case grpc.status.PERMISSION_DENIED:
                return new AuthenticationError(`${what}: the sandbox agent at ${this.address} refused the token (${name}: ${details}). ` +
                    'Use the token from GET /api/v1/sandboxes/{id}/connection for this very sandbox; Sandbox.connect(id) fetches it for you.', opts);
            case grpc.status.NOT_FOUND:
                return new NotFoundError(`${what}: ${details}`, opts);
            case grpc.status.INVALID_ARGUMENT:
            case grpc.status.OUT_OF_RANGE:
            case grpc.status.FAILED_PRECONDITION:
                return new InvalidArgumentError(`${what}: ${details}`, opts);
            case grpc.status.DEADLINE_EXCEEDED:
                return new TimeoutError(`${what}: the sandbox agent at ${this.address} did not answer within requestTimeoutMs (${timeoutMs} ms). ` +
                    'This is the request timeout, not the command timeout; raise requestTimeoutMs if the sandbox is just slow.', 'request', opts);
            case grpc.status.UNAVAILABLE:
                return new ConnectionError(`${what}: cannot reach the sandbox agent at ${this.address} (${details}). ` +
                    'Check that the sandbox is still running (Sandbox.list()) and that this machine can reach that address.', opts);
            default:
                return new SandboxError(`${what}: the sandbox agent at ${this.address} failed (${name ?? 'error'}: ${details})`, opts);
        }
    }
}
/** Errors after which a command stream is resumed rather than failed. */
export function isTransient(err) {
    const code = err?.code;
    if (err instanceof ConnectionError)
        return true;
    if (err instanceof SandboxError)
        return false;
    return (code === grpc.status.UNAVAILABLE ||
        code === grpc.status.INTERNAL ||
        code === grpc.status.UNKNOWN ||
        code === grpc.status.CANCELLED ||
        code === grpc.status.RESOURCE_EXHAUSTED);
}
/*
 * grpc-js opens its HTTP/2 sessions with http2.connect() and offers no option for
 * SETTINGS_MAX_FRAME_SIZE. We wrap http2.connect once: for an authority (host:port) that an
 * AgentConnection registered, and only when the caller set no maxFrameSize itself, the
 * session also advertises the registered frame size. Every other http2 session of the
 * process is left untouched.
 */
const frameSizes = new Map();
let http2Wrapped = false;
function registerFrameSize(authority, size) {
    if (!Number.isInteger(size) || size < 16_384 || size > 16_777_215) {
        throw new InvalidArgumentError(`maxFrameSize must be an integer from 16384 to 16777215 (or 0), got ${size}`);
    }
    frameSizes.set(authority.toLowerCase(), size);
    if (http2Wrapped)
        return;
    http2Wrapped = true;
    const mod = http2;
    const original = mod.connect;
    mod.connect = function connect(authority, ...rest) {
        try {
            const host = (typeof authority === 'string' ? new URL(authority) : authority).host.toLowerCase();
            const size = frameSizes.get(host);
            const options = rest[0];
            if (size && options && typeof options === 'object' && typeof options !== 'function') {
                const o = options;
                if (o.settings?.maxFrameSize === undefined) {
                    rest[0] = { ...o, settings: { ...o.settings, maxFrameSize: size } };
                }
            }
        }
        catch {
            /* not a URL we know: leave the call as it is */
        }
        return original.call(this, authority, ...rest);
    };
}
function formatHost(host) {
    return host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
}
function validateInfo(info) {
    if (!info || typeof info.host !== 'string' || !info.host || !Number.isInteger(info.port) || typeof info.token !== 'string') {
        throw new SandboxError(`invalid connection info ${JSON.stringify(info && { ...info, token: info.token ? '…' : info.token })}: expected {host, port, token}`);
    }
    return { host: info.host, port: info.port, token: info.token };
}
//# sourceMappingURL=agent.js.map