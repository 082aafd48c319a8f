// Entry point: the run tree at the left, the selected run at the right.
// The URL hash is the run identity (#label/timestamp), as the client prints it.
import { listRuns, runLog, RunSummary, LogEvent } from "./api";

const runsEl = document.getElementById("runs") as HTMLElement;
const runEl = document.getElementById("run") as HTMLElement;
const filterEl = document.getElementById("filter") as HTMLInputElement;

function el<K extends keyof HTMLElementTagNameMap>(tag: K, text?: string, cls?: string) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (cls) node.className = cls;
  return node;
}

export function groupByLabel(runs: RunSummary[]): Map<string, RunSummary[]> {
  const groups = new Map<string, RunSummary[]>();
  for (const run of [...runs].sort((a, b) => b.started - a.started)) {
    const list = groups.get(run.label) ?? [];
    list.push(run);
    groups.set(run.label, list);
  }
  return groups;
}

function currentRunId(): string {
  return decodeURIComponent(location.hash.replace(/^#/, "")).replace(/\/$/, "");
}

async function renderRuns(): Promise<void> {
  let runs: RunSummary[];
  try {
    runs = await listRuns(filterEl.value);
  } catch (error) {
    runsEl.replaceChildren(el("p", String(error), "error"));
    return;
  }
  const selected = currentRunId();
  const nodes: HTMLElement[] = [];
  for (const [label, group] of groupByLabel(runs)) {
    const details = el("details");
    details.open = true;
    details.append(el("summary", `${label} (${group.length})`));
    for (const run of group) {
      const link = el("a", run.timestamp);
      link.href = `#${run.id}`;
      link.dataset.run = run.id;
      link.title = `${run.samples} samples, ${run.duration.toFixed(1)} s, ${run.status}`;
      if (run.id === selected) link.classList.add("selected");
      details.append(link);
    }
    nodes.push(details);
  }
  if (nodes.length === 0) nodes.push(el("p", "No runs yet.", "hint"));
  runsEl.replaceChildren(...nodes);
}

function renderEvent(event: LogEvent): HTMLElement {
  const row = el("div", undefined, "log-entry");
  row.append(el("span", `${event.time.toFixed(3)}s ${event.kind} `, "muted"));
  row.append(el("pre", event.message));
  const stack = el("div", undefined, "stack");
  for (const frame of event.stack.slice(-3)) {
    const link = el("a", `${frame.name} (${frame.file.split("/").pop()}:${frame.line})`);
    link.href = `vscode://file/${frame.file}:${frame.line}:1`;
    stack.append(link, document.createTextNode(" "));
  }
  row.append(stack);
  return row;
}

async function renderRun(): Promise<void> {
  const id = currentRunId();
  document.querySelectorAll("nav a").forEach((a) =>
    a.classList.toggle("selected", (a as HTMLElement).dataset.run === id));
  if (!id) {
    runEl.replaceChildren(el("p", "Select a run.", "hint"));
    return;
  }
  runEl.replaceChildren(el("h2", id), el("p", "Loading…", "muted"));
  try {
    const log = await runLog(id);
    runEl.replaceChildren(el("h2", id), el("h3", `Log (${log.events.length})`),
      ...log.events.map(renderEvent));
  } catch (error) {
    runEl.replaceChildren(el("h2", id), el("p", String(error), "error"));
  }
}

let filterTimer = 0;
filterEl.addEventListener("input", () => {
  clearTimeout(filterTimer);
  filterTimer = window.setTimeout(renderRuns, 200);
});
window.addEventListener("hashchange", renderRun);
renderRuns().then(renderRun);
