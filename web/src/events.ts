// The socket.io contract between the page and the server, in one place.
//
// This file mirrors the server: crates/sandstream-server/src/hub/events.rs (`Event`,
// every event the server sends, and their payload structs) and hub/mod.rs (the events it
// listens to: `join-container`, `resume-execution`), as API.md documents them. The server is Rust and the page TypeScript, so nothing is generated; instead
// test/unit/events.test.mjs reads the server's sources and fails when the event names or
// the fields of `OutputEvent`, `CompleteEvent` and the resume request drift from the
// lists below.
// Types only, plus those lists: no DOM, no IO.

export type Phase = "install" | "run";
export type Stream = "stdout" | "stderr";
/** How an execution ended (`running` while it has not). */
export type FinalStatus = "success" | "error" | "timeout" | "cancelled";

/** One piece of output, as `GET /api/v1/executions/{id}/logs` lists it. `data` is text:
 * the server decodes UTF-8 and never splits a character across chunks. */
export interface LogChunk {
  /** 1, 2, 3, … per execution, across both streams and both phases. */
  seq: number;
  type: Stream;
  phase: Phase;
  data: string;
}

/** `execution-output` (hub/events.rs `OutputEvent`). */
export interface OutputEvent extends LogChunk {
  executionId: string;
  containerId: string;
}

/** `execution-phase`: the execution entered a phase. */
export interface PhaseEvent {
  executionId: string;
  containerId: string;
  phase: Phase;
  timestamp?: string;
}

/** `execution-complete`. `lastSeq` is the execution's last chunk; `durationMs` may be
 * missing when the page makes one up (a poll over REST). */
export interface CompleteEvent {
  executionId: string;
  containerId: string;
  exitCode: number | null;
  status: FinalStatus;
  timestamp?: string;
  durationMs?: number | null;
  /** Why, in words (an out-of-memory kill, a failed install, …). */
  error?: string | null;
  /** The kernel's out-of-memory killer ended the program: the sandbox reached its memory limit. */
  oomKilled?: boolean;
  lastSeq?: number;
}

/** `container-joined`: the answer to `join-container`. */
export interface ContainerJoinedEvent {
  containerId: string;
}

/** `error`: a refused join or resume, or a revoked key. */
export interface ErrorEvent {
  code: string;
  message: string;
}

/** `resume-execution`: replay every stored chunk with `seq > afterSeq`. */
export interface ResumeRequest {
  executionId: string;
  afterSeq: number;
}

/** Server → client events. */
export interface ServerToClientEvents {
  "container-joined": (ev: ContainerJoinedEvent) => void;
  "execution-output": (ev: OutputEvent) => void;
  "execution-phase": (ev: PhaseEvent) => void;
  "execution-complete": (ev: CompleteEvent) => void;
  error: (ev: ErrorEvent) => void;
}

/** Client → server events. `join-container` takes the bare id, as design note 000 sends it. */
export interface ClientToServerEvents {
  "join-container": (containerId: string) => void;
  "resume-execution": (req: ResumeRequest) => void;
}

// The same names and fields as values, for the drift test. Each list is checked against
// its type both ways: an entry the type lacks does not compile (`satisfies`), and a key
// the list lacks makes the `Exact` check below fail to compile.

export const SERVER_EVENTS = [
  "container-joined",
  "execution-output",
  "execution-phase",
  "execution-complete",
  "error",
] as const satisfies readonly (keyof ServerToClientEvents)[];

export const CLIENT_EVENTS = ["join-container", "resume-execution"] as const satisfies readonly (keyof ClientToServerEvents)[];

export const OUTPUT_EVENT_FIELDS = ["executionId", "containerId", "type", "data", "seq", "phase"] as const satisfies readonly (keyof OutputEvent)[];

export const COMPLETE_EVENT_FIELDS = [
  "executionId",
  "containerId",
  "exitCode",
  "status",
  "timestamp",
  "durationMs",
  "error",
  "oomKilled",
  "lastSeq",
] as const satisfies readonly (keyof CompleteEvent)[];

export const RESUME_FIELDS = ["executionId", "afterSeq"] as const satisfies readonly (keyof ResumeRequest)[];

type Exact<List extends readonly string[], Keys extends string> = [Exclude<Keys, List[number]>] extends [never] ? true : Exclude<Keys, List[number]>;
const exact: [
  Exact<typeof SERVER_EVENTS, keyof ServerToClientEvents>,
  Exact<typeof CLIENT_EVENTS, keyof ClientToServerEvents>,
  Exact<typeof OUTPUT_EVENT_FIELDS, keyof OutputEvent>,
  Exact<typeof COMPLETE_EVENT_FIELDS, keyof CompleteEvent>,
  Exact<typeof RESUME_FIELDS, keyof ResumeRequest>,
] = [true, true, true, true, true];
void exact;
