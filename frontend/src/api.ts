// The public HTTP API of micrologd, as the UI reads it (/tmp/api_contract.md,
// served as /api/v1/openapi.json). Times are seconds since the run's start.
// Every fetcher rejects with an ApiError carrying the HTTP status, so a view
// can tell "not served by this collector" (404) from a real failure.

export interface RunSummary {
  id: string;
  label: string;
  timestamp: string;
  started: number;
  duration: number;
  samples: number;
  logs: number;
  status: string;
  host: string;
  user: string;
}

export interface ThreadInfo {
  id: number;
  ident?: number;
  native_id?: number;
  name: string;
  samples: number;
  started?: number;
  ended?: number;
}

export interface RunDetail extends RunSummary {
  threads: ThreadInfo[];
}

export interface StackFrame {
  name: string;
  file: string;
  line: number;
}

export interface LogEvent {
  time: number;
  kind: string;
  level: number;
  logger?: string;
  message: string;
  thread: number;
  stack: StackFrame[];
}

export interface FrameInfo {
  name: string;
  file: string;
  line: number;
  first_line: number;
  module: string;
  flags: number;
}

export interface Call {
  start: number;
  duration: number;
  depth: number;
  frame: string;
  count: number;
}

export interface TimelineThread {
  id: number;
  name: string;
  calls: Call[];
}

export interface Timeline {
  run: string;
  start: number;
  end: number;
  duration: number;
  sample_period: number;
  frames: Record<string, FrameInfo>;
  threads: TimelineThread[];
  merged: boolean;
}

export interface FlameNode {
  name: string;
  file?: string;
  line?: number;
  first_line?: number;
  value: number;
  self: number;
  children: FlameNode[];
}

export interface Flamegraph {
  run: string;
  total: number;
  sample_period: number;
  root: FlameNode;
}

export interface StatusSeries {
  time: number[];
  cpu: number[];
  system_cpu: number[];
  rss: number[];
  memory_total: number[];
  memory_free: number[];
  modules: number[];
  objects: number[];
}

export interface Status {
  run: string;
  series: StatusSeries;
}

export interface DesignNode {
  id: string;
  name: string;
  kind: "module" | "class";
  module: string;
  time: number;
  self: number;
}

export interface DesignEdge {
  source: string;
  target: string;
  time: number;
  calls: number;
}

export interface Design {
  run: string;
  nodes: DesignNode[];
  edges: DesignEdge[];
}

export interface SimilarCall {
  start: number;
  duration: number;
  thread: number;
  depth: number;
  caller: string;
  score: number;
  anomaly: boolean;
}

export interface Anomaly {
  name: string;
  start: number;
  duration: number;
  thread: number;
  score: number;
}

export interface Calls {
  run: string;
  name: string;
  calls: SimilarCall[];
  median: number;
  mad: number;
  anomalies: Anomaly[];
}

export interface SearchResult {
  run: string;
  q: string;
  frames: string[];
  functions: string[];
  calls: number;
  log: number[];
}

export type ExportFormat = "speedscope" | "pprof" | "collapsed" | "chrome";
export const EXPORT_FORMATS: ExportFormat[] = ["speedscope", "pprof", "collapsed", "chrome"];

export class ApiError extends Error {
  constructor(message: string, readonly status: number) {
    super(message);
  }
}

async function getJSON<T>(path: string, signal?: AbortSignal): Promise<T> {
  const response = await fetch(path, { headers: { Accept: "application/json" }, signal });
  const body = await response.json().catch(() => ({ error: response.statusText }));
  if (!response.ok) {
    throw new ApiError((body && body.error) || `${response.status} ${response.statusText}`,
      response.status);
  }
  return body as T;
}

/** The query string of the defined parameters, "" when none. */
export function query(params: Record<string, string | number | undefined>): string {
  const parts: string[] = [];
  for (const [key, value] of Object.entries(params)) {
    if (value === undefined || value === "") continue;
    parts.push(`${key}=${encodeURIComponent(String(value))}`);
  }
  return parts.length ? `?${parts.join("&")}` : "";
}

export function runPath(id: string): string {
  return `/api/v1/runs/${encodeURIComponent(id)}`;
}

export interface Window {
  start?: number;
  end?: number;
  width?: number;
  threads?: number[];
}

function windowParams(w: Window): Record<string, string | number | undefined> {
  return {
    start: w.start, end: w.end,
    width: w.width === undefined ? undefined : Math.max(1, Math.min(20000, Math.round(w.width))),
    threads: w.threads && w.threads.length ? w.threads.join(",") : undefined,
  };
}

/** The newest `limit` runs whose "<id> <host> <user>" matches filter. */
export function listRuns(filter: string, limit: number): Promise<RunSummary[]> {
  return getJSON<RunSummary[]>(`/api/v1/runs${query({ filter, limit })}`);
}

export function getRun(id: string): Promise<RunDetail> {
  return getJSON(runPath(id));
}

export async function deleteRun(id: string): Promise<void> {
  const response = await fetch(runPath(id), { method: "DELETE" });
  if (!response.ok) throw new ApiError(`delete failed: ${response.status}`, response.status);
}

export function runLog(id: string, q?: string): Promise<{ run: string; events: LogEvent[] }> {
  return getJSON(`${runPath(id)}/log${query({ q })}`);
}

export function runTimeline(id: string, w: Window, signal?: AbortSignal): Promise<Timeline> {
  return getJSON(`${runPath(id)}/timeline${query(windowParams(w))}`, signal);
}

export function runFlamegraph(id: string, w: Window): Promise<Flamegraph> {
  const p = windowParams(w);
  delete p.width;
  return getJSON(`${runPath(id)}/flamegraph${query(p)}`);
}

export function runStatus(id: string, w: Window, signal?: AbortSignal): Promise<Status> {
  const p = windowParams(w);
  delete p.threads;
  return getJSON(`${runPath(id)}/status${query(p)}`, signal);
}

export function runDesign(id: string): Promise<Design> {
  return getJSON(`${runPath(id)}/design`);
}

export function runCalls(id: string, name: string): Promise<Calls> {
  return getJSON(`${runPath(id)}/calls${query({ name })}`);
}

export function runSearch(id: string, q: string): Promise<SearchResult> {
  return getJSON(`${runPath(id)}/search${query({ q })}`);
}

export function exportUrl(id: string, format: ExportFormat): string {
  return `${runPath(id)}/export${query({ format })}`;
}

export function liveUrl(id: string): string {
  return `${runPath(id)}/live`;
}
