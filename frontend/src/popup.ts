// The call popup: the clicked call's name, start, duration and source link,
// then the other calls of the same function in the run (GET calls?name=) —
// when, how long, on which thread — with the anomalies (robust z-score)
// highlighted, and a strip chart of their durations over the run.

import { Calls, FrameInfo, runCalls } from "./api";
import { el, fitCanvas, sourceAnchor } from "./dom";
import { formatDuration, sourceLink } from "./scale";

export interface PopupCall {
  name: string;
  start: number;
  duration: number;
  count?: number;
  frame?: FrameInfo;
  file?: string;
  line?: number;
}

export class CallPopup {
  readonly element = el("div", undefined, "popup");
  private generation = 0;

  constructor(private readonly onJump: (start: number, duration: number) => void) {
    this.element.hidden = true;
    document.addEventListener("keydown", (e) => {
      if (e.key === "Escape") this.hide();
    });
  }

  hide(): void {
    this.element.hidden = true;
    this.generation++;
  }

  async show(run: string, call: PopupCall, x: number, y: number, duration: number): Promise<void> {
    const gen = ++this.generation;
    const close = el("button", "✕", "close");
    close.addEventListener("click", () => this.hide());
    const file = call.frame?.file ?? call.file;
    const line = call.frame?.first_line ?? call.line;
    const head = el("div", undefined, "popup-head");
    head.append(el("strong", call.name), close);
    const facts = el("table");
    const row = (k: string, v: string | Node) => {
      const tr = facts.insertRow();
      tr.insertCell().textContent = k;
      const td = tr.insertCell();
      if (typeof v === "string") td.textContent = v;
      else td.append(v);
    };
    row("start", formatDuration(call.start));
    row("duration", formatDuration(call.duration) + (call.count && call.count > 1 ? ` (${call.count} merged)` : ""));
    if (file) row("source", sourceAnchor(sourceLink(file, line ?? 1), `${file}:${line ?? 1}`, "Open in VS Code"));
    const similar = el("div", "Loading similar calls…", "muted");
    this.element.replaceChildren(head, facts, similar);
    this.element.hidden = false;
    this.place(x, y);
    let calls: Calls;
    try {
      calls = await runCalls(run, call.name);
    } catch (error) {
      if (gen === this.generation) similar.textContent = `Similar calls: ${(error as Error).message}`;
      return;
    }
    if (gen !== this.generation) return;
    similar.replaceWith(this.similar(calls, duration));
    this.place(x, y);
  }

  private similar(calls: Calls, runDuration: number): HTMLElement {
    const box = el("div", undefined, "similar");
    const anomalies = calls.calls.filter((c) => c.anomaly).length;
    box.append(el("div", `${calls.calls.length} calls of this function, median ${formatDuration(calls.median)}` +
      `, ${anomalies} anomal${anomalies === 1 ? "y" : "ies"}`, "muted"));
    const canvas = el("canvas", undefined, "strip");
    box.append(canvas);
    requestAnimationFrame(() => this.strip(canvas, calls, runDuration));
    const table = el("table", undefined, "calls");
    const head = table.createTHead().insertRow();
    for (const h of ["start", "duration", "thread", "caller", "score"]) head.append(el("th", h));
    const body = table.createTBody();
    const sorted = [...calls.calls].sort((a, b) => Number(b.anomaly) - Number(a.anomaly) || a.start - b.start);
    for (const c of sorted.slice(0, 200)) {
      const tr = body.insertRow();
      if (c.anomaly) tr.className = "anomaly";
      tr.title = "Show on the timeline";
      for (const v of [formatDuration(c.start), formatDuration(c.duration), String(c.thread), c.caller,
        Number.isFinite(c.score) ? c.score.toFixed(1) : "–"]) tr.insertCell().textContent = v;
      tr.addEventListener("click", () => this.onJump(c.start, c.duration));
    }
    box.append(table);
    if (calls.calls.length > 200) box.append(el("div", `… ${calls.calls.length - 200} more`, "muted"));
    return box;
  }

  /** Each call as a bar at its start time, height = duration; anomalies red. */
  private strip(canvas: HTMLCanvasElement, calls: Calls, runDuration: number): void {
    const width = 360;
    const height = 48;
    const ctx = fitCanvas(canvas, width, height);
    ctx.fillStyle = "#151515";
    ctx.fillRect(0, 0, width, height);
    const maxD = Math.max(...calls.calls.map((c) => c.duration), 1e-9);
    const span = Math.max(runDuration, ...calls.calls.map((c) => c.start + c.duration), 1e-9);
    for (const c of calls.calls) {
      const x = (c.start / span) * (width - 2);
      const h = Math.max(2, (c.duration / maxD) * (height - 4));
      ctx.fillStyle = c.anomaly ? "#ff4d4d" : "#4fc1ff";
      ctx.fillRect(x, height - h, 2, h);
    }
  }

  private place(x: number, y: number): void {
    const w = this.element.offsetWidth || 400;
    const h = this.element.offsetHeight || 200;
    this.element.style.left = `${Math.max(4, Math.min(x + 10, window.innerWidth - w - 8))}px`;
    this.element.style.top = `${Math.max(4, Math.min(y + 10, window.innerHeight - h - 8))}px`;
  }
}
