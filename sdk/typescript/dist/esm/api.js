/** The REST client for the Sandstream server (API.md). */
import { AuthenticationError, ConnectionError, InvalidArgumentError, NotFoundError, SandboxError, TimeoutError, } from './errors.js';
import { DEFAULT_REQUEST_TIMEOUT_MS } from './agent.js';
export const DEFAULT_API_URL = 'http://127.0.0.1:3000';
export function toSandboxInfo(w) {
    return {
        sandboxId: w.id,
        template: w.template,
        state: w.state,
        cpu: w.cpu,
        memoryMb: w.memoryMb,
        envs: w.envs ?? {},
        metadata: w.metadata ?? {},
        ...(w.runnerId ? { runnerId: w.runnerId } : {}),
        startedAt: new Date(w.createdAt),
        endAt: new Date(w.expiresAt),
    };
}
export class ApiClient {
    constructor(options = {}) {
        const env = typeof process !== 'undefined' ? process.env : {};
        const key = options.apiKey ?? env.SANDSTREAM_API_KEY;
        if (!key) {
            throw new AuthenticationError('no Sandstream API key: pass { apiKey } or set SANDSTREAM_API_KEY (`sandstream up` prints the admin key and writes it to DATA_DIR/admin-key)', { code: 'unauthorized' });
        }
        this.apiKey = key;
        this.apiUrl = (options.apiUrl ?? env.SANDSTREAM_API_URL ?? DEFAULT_API_URL).replace(/\/+$/, '');
        this.requestTimeoutMs = options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
    }
    async request(method, path, body) {
        const url = `${this.apiUrl}${path}`;
        const what = `${method} ${path}`;
        let res;
        try {
            res = await fetch(url, {
                method,
                headers: {
                    authorization: `Bearer ${this.apiKey}`,
                    accept: 'application/json',
                    ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
                },
                ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
                signal: AbortSignal.timeout(this.requestTimeoutMs),
            });
        }
        catch (e) {
            const err = e;
            if (err.name === 'TimeoutError' || err.name === 'AbortError') {
                throw new TimeoutError(`${what}: the Sandstream server at ${this.apiUrl} did not answer within requestTimeoutMs (${this.requestTimeoutMs} ms); raise requestTimeoutMs if it is just slow`, 'request', { cause: e });
            }
            const why = err.cause?.code ?? err.cause?.message ?? err.message;
            throw new ConnectionError(`${what}: cannot reach the Sandstream server at ${this.apiUrl} (${why}). Is it running (sandstream up)? Set SANDSTREAM_API_URL or pass { apiUrl } if it listens elsewhere.`, { cause: e });
        }
        const text = await res.text();
        if (res.ok) {
            if (res.status === 204 || text === '')
                return undefined;
            try {
                return JSON.parse(text);
            }
            catch (e) {
                throw new SandboxError(`${what}: the server answered ${res.status} with a body that is not JSON`, { cause: e, httpStatus: res.status });
            }
        }
        let code = 'http_' + res.status;
        let message = text.slice(0, 300) || res.statusText;
        try {
            const j = JSON.parse(text);
            if (j.code)
                code = j.code;
            if (j.message)
                message = j.message;
        }
        catch {
            /* not the documented error shape; keep the raw text */
        }
        const opts = { code, httpStatus: res.status };
        switch (res.status) {
            case 401:
                throw new AuthenticationError(`${what}: the Sandstream server at ${this.apiUrl} refused the API key (${message}). Check SANDSTREAM_API_KEY or the apiKey option.`, opts);
            case 403:
                throw new AuthenticationError(`${what}: this API key may not do that (${message}); it needs the admin key.`, opts);
            case 404:
                throw new NotFoundError(`${what}: ${message}. It may have been killed or have expired; Sandbox.list() shows the running ones.`, opts);
            case 400:
            case 413:
                throw new InvalidArgumentError(`${what}: ${message}`, opts);
            case 409:
                throw new SandboxError(`${what}: ${message}. The sandbox is not running; create a new one.`, opts);
            case 503:
                throw new SandboxError(`${what}: ${message}. No runner can take a sandbox now; retry later or kill unused sandboxes.`, opts);
            default:
                throw new SandboxError(`${what}: the server answered ${res.status} (${code}: ${message})`, opts);
        }
    }
    createSandbox(body) {
        return this.request('POST', '/api/v1/sandboxes', body);
    }
    getSandbox(id) {
        return this.request('GET', `/api/v1/sandboxes/${encodeURIComponent(id)}`);
    }
    listSandboxes() {
        return this.request('GET', '/api/v1/sandboxes');
    }
    killSandbox(id) {
        return this.request('DELETE', `/api/v1/sandboxes/${encodeURIComponent(id)}`);
    }
    setTimeout(id, timeoutMs) {
        return this.request('POST', `/api/v1/sandboxes/${encodeURIComponent(id)}/timeout`, { timeoutMs });
    }
    connection(id) {
        return this.request('GET', `/api/v1/sandboxes/${encodeURIComponent(id)}/connection`);
    }
}
//# sourceMappingURL=api.js.map