// The public HTTP API of micrologd, as the UI reads it (see collector/openapi).

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

async function getJSON<T>(path: string): Promise<T> {
  const response = await fetch(path, { headers: { Accept: "application/json" } });
  const body = await response.json().catch(() => ({ error: response.statusText }));
  if (!response.ok) {
    throw new Error((body && body.error) || `${response.status} ${response.statusText}`);
  }
  return body as T;
}

export function runPath(id: string): string {
  return `/api/v1/runs/${encodeURIComponent(id)}`;
}

export function listRuns(filter: string): Promise<RunSummary[]> {
  const query = filter ? `?filter=${encodeURIComponent(filter)}` : "";
  return getJSON<RunSummary[]>(`/api/v1/runs${query}`);
}

export function runLog(id: string): Promise<{ run: string; events: LogEvent[] }> {
  return getJSON(`${runPath(id)}/log`);
}
