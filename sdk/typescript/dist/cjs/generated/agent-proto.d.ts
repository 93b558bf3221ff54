export declare const AGENT_PROTO_JSON: Record<string, unknown>;
