// The timeline: one flame chart of calls per thread over time, the four
// resource lines (green CPU, red memory, yellow modules, white heap objects)
// with a hover popup of their values, log entries as markers, slow imports
// flagged. Wheel zooms around the mouse, drag pans. Two data sets are kept:
// the overview (the whole run at canvas width, fetched once) and the detail
// (the visible window at canvas width, fetched after each pan or zoom), so a
// frame is always drawn from what is at hand and deeper zooms show more.

import {
  Call, FrameInfo, LogEvent, runStatus, runTimeline, StatusSeries, Timeline, ThreadInfo,
} from "./api";
import { el, fitCanvas, fitText } from "./dom";
import {
  CallRect, clampView, colorOf, formatBytes, formatDuration, hitTest, isImportFrame, layoutCalls,
  panBy, RESOURCES, resourcesAt, rowsOf, seriesPoints, seriesRange, SLOW_IMPORT, timeTicks, timeToX,
  View, wheelFactor, xToTime, zoomAt,
} from "./scale";
import { matches, Search } from "./search";

const AXIS = 20;
const MARKERS = 14;
const RESOURCE_H = 70;
const ROW = 16;
const LANE_LABEL = 18;

export interface CallPick {
  call: Call;
  frame: FrameInfo | undefined;
  thread: number;
  x: number;
  y: number;
}

interface Lane {
  thread: number;
  top: number;
  rows: number;
}

export class TimelineView {
  readonly element: HTMLElement;
  private readonly canvas = el("canvas");
  private readonly threadsBar = el("div", undefined, "threads");
  private readonly tip = el("div", undefined, "tip");
  private run = "";
  private duration = 1;
  private threads: ThreadInfo[] = [];
  private selected = new Set<number>();
  private overview?: Timeline;
  private detail?: Timeline;
  private status?: StatusSeries;
  private statusDetail?: { view: View; series: StatusSeries };
  private log: LogEvent[] = [];
  private search: Search = { text: "" };
  private matchCache = new WeakMap<FrameInfo, boolean>();
  private view: View = { start: 0, end: 1 };
  private rects: { rect: CallRect; thread: number }[] = [];
  private lanes: Lane[] = [];
  private fetchTimer = 0;
  private fetchAbort?: AbortController;
  private frameRequested = false;
  private drag?: { x: number; view: View; moved: boolean };
  private mouse?: { x: number; y: number };
  /** Wall-clock milliseconds of the last completed draw (the benchmark reads it). */
  lastDraw = 0;
  draws = 0;
  /** performance.now() of the first draw with calls after open() (the first-paint benchmark reads it). */
  firstPaint = 0;

  constructor(private readonly onPick: (pick: CallPick) => void,
    private readonly onLog: (index: number) => void,
    private readonly onWindow: (view: View, threads: number[]) => void) {
    this.element = el("div", undefined, "timeline");
    const scroller = el("div", undefined, "timeline-scroll");
    scroller.append(this.canvas);
    this.element.append(this.threadsBar, scroller, this.tip);
    this.canvas.addEventListener("wheel", (e) => this.onWheel(e), { passive: false });
    this.canvas.addEventListener("mousedown", (e) => this.onDown(e));
    window.addEventListener("mousemove", (e) => this.onMove(e));
    window.addEventListener("mouseup", (e) => this.onUp(e));
    this.canvas.addEventListener("mouseleave", () => {
      this.mouse = undefined;
      this.tip.hidden = true;
      this.requestDraw();
    });
    new ResizeObserver(() => {
      this.requestDraw();
      this.scheduleFetch();
    }).observe(scroller);
  }

  /** Opens a run: fetches the overview of every thread, then draws. */
  async open(run: string, duration: number, threads: ThreadInfo[]): Promise<void> {
    this.run = run;
    this.duration = Math.max(duration, 1e-3);
    this.threads = threads;
    this.selected = new Set(threads.map((t) => t.id));
    this.view = { start: 0, end: this.duration };
    this.overview = this.detail = undefined;
    this.status = this.statusDetail = undefined;
    this.firstPaint = 0;
    this.renderThreads();
    const width = this.width();
    const [timeline, status] = await Promise.allSettled([
      runTimeline(run, { width }),
      runStatus(run, { width: Math.min(4000, width * 2) }),
    ]);
    if (this.run !== run) return;
    if (timeline.status === "rejected") throw timeline.reason;
    this.overview = timeline.value;
    if (this.overview.duration > 0) this.duration = this.overview.duration;
    if (this.threads.length === 0) {
      this.threads = this.overview.threads.map((t) => ({ id: t.id, name: t.name, samples: 0 }));
      this.selected = new Set(this.threads.map((t) => t.id));
      this.renderThreads();
    }
    this.view = { start: 0, end: this.duration };
    if (status.status === "fulfilled") this.status = status.value.series;
    this.drawNow();
  }

  /** Appends calls, status ticks and duration of a live run (from the SSE stream). */
  extend(duration: number, calls?: { id: number; calls: Call[] }[], tick?: Partial<Record<keyof StatusSeries, number>>): void {
    const atEnd = this.view.end >= this.duration - 1e-6;
    if (duration > this.duration) {
      this.duration = duration;
      if (this.overview) this.overview.duration = duration;
      if (atEnd) this.view = clampView({ start: this.view.start, end: duration }, duration);
    }
    if (calls && this.overview) {
      for (const t of calls) {
        let lane = this.overview.threads.find((x) => x.id === t.id);
        if (!lane) {
          lane = { id: t.id, name: `thread ${t.id}`, calls: [] };
          this.overview.threads.push(lane);
        }
        lane.calls.push(...t.calls);
      }
    }
    if (tick && this.status && tick.time !== undefined) {
      for (const key of Object.keys(this.status) as (keyof StatusSeries)[]) {
        this.status[key].push(tick[key] ?? this.status[key][this.status[key].length - 1] ?? 0);
      }
    }
    this.requestDraw();
  }

  setLog(events: LogEvent[]): void {
    this.log = events;
    this.requestDraw();
  }

  setSearch(search: Search): void {
    this.search = search;
    this.matchCache = new WeakMap();
    this.requestDraw();
  }

  /** True when the search matches the frame's name, module or file (cached per frame). */
  private isMatch(frame: FrameInfo | undefined): boolean {
    if (!frame || !this.search.regex) return false;
    let hit = this.matchCache.get(frame);
    if (hit === undefined) {
      hit = matches(this.search, frame.name, frame.module, frame.file);
      this.matchCache.set(frame, hit);
    }
    return hit;
  }

  /** How many calls drawn in the last frame match the search (tests and the status bar read it). */
  matchCount(): number {
    const frames = this.frames();
    return this.rects.filter((r) => this.isMatch(frames[r.rect.call.frame])).length;
  }

  /** Centers the view on time t (keeping the zoom, or zooming to 2 s when wider). */
  showTime(t: number): void {
    const span = Math.min(this.view.end - this.view.start, 2);
    this.setView({ start: t - span / 2, end: t + span / 2 });
  }

  /** Shows [start, start + duration] with a margin. */
  showRange(start: number, duration: number): void {
    const pad = Math.max(duration * 0.25, 1e-3);
    this.setView({ start: start - pad, end: start + duration + pad });
  }

  getView(): View {
    return { ...this.view };
  }

  selectedThreads(): number[] {
    return [...this.selected];
  }

  frames(): Record<string, FrameInfo> {
    return { ...(this.overview?.frames ?? {}), ...(this.detail?.frames ?? {}) };
  }

  setView(view: View): void {
    this.view = clampView(view, this.duration);
    this.requestDraw();
    this.scheduleFetch();
  }

  private renderThreads(): void {
    const items = this.threads.map((t) => {
      const label = el("label");
      const box = el("input");
      box.type = "checkbox";
      box.checked = this.selected.has(t.id);
      box.dataset.thread = String(t.id);
      box.addEventListener("change", () => {
        if (box.checked) this.selected.add(t.id);
        else this.selected.delete(t.id);
        this.requestDraw();
        this.onWindow(this.getView(), this.selectedThreads());
      });
      label.append(box, ` ${t.name || `thread ${t.id}`}`);
      return label;
    });
    this.threadsBar.replaceChildren(el("span", "Threads:", "muted"), ...items);
  }

  private width(): number {
    return Math.max(100, (this.canvas.parentElement?.clientWidth ?? 800) - 2);
  }

  private scheduleFetch(): void {
    clearTimeout(this.fetchTimer);
    this.fetchTimer = window.setTimeout(() => void this.fetchDetail(), 120);
    this.onWindow(this.getView(), this.selectedThreads());
  }

  private async fetchDetail(): Promise<void> {
    if (!this.run) return;
    const view = { ...this.view };
    const full = view.end - view.start >= this.duration * 0.999;
    if (full) {
      this.detail = undefined;
      this.statusDetail = undefined;
      this.requestDraw();
      return;
    }
    this.fetchAbort?.abort();
    const abort = new AbortController();
    this.fetchAbort = abort;
    const width = this.width();
    // A little wider than the view, so a small pan needs no new fetch to look complete.
    const pad = (view.end - view.start) * 0.25;
    const w = { start: Math.max(0, view.start - pad), end: Math.min(this.duration, view.end + pad) };
    const scaled = width * ((w.end - w.start) / (view.end - view.start));
    try {
      const [timeline, status] = await Promise.all([
        runTimeline(this.run, { ...w, width: scaled }, abort.signal),
        runStatus(this.run, { ...w, width: Math.min(4000, scaled) }, abort.signal).catch(() => undefined),
      ]);
      if (abort.signal.aborted) return;
      this.detail = timeline;
      if (status) this.statusDetail = { view: w, series: status.series };
      this.requestDraw();
    } catch (error) {
      if ((error as Error).name !== "AbortError") console.warn("timeline:", error);
    }
  }

  requestDraw(): void {
    if (this.frameRequested) return;
    this.frameRequested = true;
    requestAnimationFrame(() => {
      this.frameRequested = false;
      this.drawNow();
    });
  }

  private layoutLanes(): Lane[] {
    const lanes: Lane[] = [];
    let top = AXIS + MARKERS + RESOURCE_H + 6;
    const source = this.overview?.threads ?? [];
    for (const t of this.threads) {
      if (!this.selected.has(t.id)) continue;
      const calls = source.find((x) => x.id === t.id)?.calls ?? [];
      const detailCalls = this.detail?.threads.find((x) => x.id === t.id)?.calls ?? [];
      const rows = Math.max(1, rowsOf(calls), rowsOf(detailCalls));
      lanes.push({ thread: t.id, top, rows });
      top += LANE_LABEL + rows * ROW + 6;
    }
    return lanes;
  }

  drawNow(): void {
    const width = this.width();
    this.lanes = this.layoutLanes();
    const last = this.lanes[this.lanes.length - 1];
    const height = Math.max(240, last ? last.top + LANE_LABEL + last.rows * ROW + 10 : 240);
    const ctx = fitCanvas(this.canvas, width, height);
    const view = this.view;
    ctx.fillStyle = "#1b1b1b";
    ctx.fillRect(0, 0, width, height);
    this.drawAxis(ctx, width, height);
    this.drawResources(ctx, width);
    this.rects = [];
    const frames = this.frames();
    const detailWindow = this.detail ? { start: this.detail.start, end: this.detail.end } : undefined;
    for (const lane of this.lanes) {
      const name = this.threads.find((t) => t.id === lane.thread)?.name ?? `thread ${lane.thread}`;
      ctx.fillStyle = "#9cdcfe";
      ctx.font = "12px system-ui, sans-serif";
      ctx.textBaseline = "middle";
      ctx.fillText(name, 4, lane.top + LANE_LABEL / 2);
      const callsTop = lane.top + LANE_LABEL;
      const overview = this.overview?.threads.find((t) => t.id === lane.thread)?.calls ?? [];
      const detail = this.detail?.threads.find((t) => t.id === lane.thread)?.calls;
      let rects = layoutCalls(overview, view, width, callsTop, ROW);
      if (detail && detailWindow) {
        // Overview calls only outside the detail window; the detail inside it.
        const x0 = timeToX(detailWindow.start, view, width);
        const x1 = timeToX(detailWindow.end, view, width);
        rects = rects.filter((r) => r.x + r.w <= x0 || r.x >= x1);
        rects.push(...layoutCalls(detail, view, width, callsTop, ROW));
      }
      this.drawCalls(ctx, rects, frames);
      for (const rect of rects) this.rects.push({ rect, thread: lane.thread });
    }
    this.drawMarkers(ctx, width, height);
    this.drawHover(ctx, width, height);
    this.lastDraw = performance.now();
    if (!this.firstPaint && this.rects.length > 0) this.firstPaint = this.lastDraw;
    this.draws++;
    this.canvas.dataset.draws = String(this.draws);
    this.canvas.dataset.calls = String(this.rects.length);
    this.canvas.dataset.matches = this.search.regex ? String(this.matchCount()) : "";
  }

  private drawAxis(ctx: CanvasRenderingContext2D, width: number, height: number): void {
    ctx.font = "11px system-ui, sans-serif";
    ctx.textBaseline = "middle";
    for (const t of timeTicks(this.view, width)) {
      const x = Math.round(timeToX(t, this.view, width)) + 0.5;
      ctx.strokeStyle = "#2c2c2c";
      ctx.beginPath();
      ctx.moveTo(x, AXIS);
      ctx.lineTo(x, height);
      ctx.stroke();
      ctx.fillStyle = "#888";
      ctx.fillText(formatDuration(t), x + 3, AXIS / 2);
    }
  }

  private drawResources(ctx: CanvasRenderingContext2D, width: number): void {
    const top = AXIS + MARKERS;
    ctx.fillStyle = "#151515";
    ctx.fillRect(0, top, width, RESOURCE_H);
    const useDetail = this.statusDetail &&
      this.statusDetail.view.start <= this.view.start && this.statusDetail.view.end >= this.view.end;
    const series = useDetail ? this.statusDetail!.series : this.status;
    if (!series) return;
    const all = this.status ?? series;
    for (const res of RESOURCES) {
      const range = seriesRange(all[res.key], res.key === "cpu");
      const pts = seriesPoints(series.time, series[res.key], this.view, width, top + 2, RESOURCE_H - 4,
        range.hi, range.lo);
      ctx.strokeStyle = res.color;
      ctx.lineWidth = 1.2;
      ctx.beginPath();
      for (let i = 0; i < pts.length; i += 2) {
        if (i === 0) ctx.moveTo(pts[i], pts[i + 1]);
        else ctx.lineTo(pts[i], pts[i + 1]);
      }
      ctx.stroke();
    }
    ctx.lineWidth = 1;
  }

  private drawCalls(ctx: CanvasRenderingContext2D, rects: CallRect[],
    frames: Record<string, FrameInfo>): void {
    const searching = this.search.regex !== undefined;
    ctx.font = "11px system-ui, sans-serif";
    ctx.textBaseline = "middle";
    for (const r of rects) {
      const frame = frames[r.call.frame];
      const name = frame?.name ?? `#${r.call.frame}`;
      const hit = searching && this.isMatch(frame);
      ctx.globalAlpha = searching && !hit ? 0.3 : 1;
      ctx.fillStyle = hit ? "#ff00ff" : r.call.count > 1 ? "#8a6d3b" : colorOf(name);
      ctx.fillRect(r.x, r.y, r.w, r.h);
      if (isImportFrame(frame) && r.call.duration >= SLOW_IMPORT) {
        ctx.strokeStyle = "#ff3030";
        ctx.lineWidth = 2;
        ctx.strokeRect(r.x + 1, r.y + 1, Math.max(r.w - 2, 1), r.h - 2);
        ctx.lineWidth = 1;
        ctx.fillStyle = "#ff3030";
        ctx.fillText("⚠", r.x + 2, r.y + r.h / 2);
      }
      if (r.w > 30) {
        const label = fitText(ctx, r.call.count > 1 ? `${name} +${r.call.count - 1}` : name, r.w - 6);
        if (label) {
          ctx.fillStyle = "#111";
          ctx.fillText(label, r.x + 3, r.y + r.h / 2 + 1);
        }
      }
    }
    ctx.globalAlpha = 1;
  }

  private drawMarkers(ctx: CanvasRenderingContext2D, width: number, height: number): void {
    const searching = this.search.regex !== undefined;
    for (const ev of this.log) {
      if (ev.time < this.view.start || ev.time > this.view.end) continue;
      const x = Math.round(timeToX(ev.time, this.view, width)) + 0.5;
      const hit = searching && this.search.regex!.test(ev.message);
      const color = hit ? "#ff00ff" : ev.kind === "stderr" || ev.level >= 40 ? "#f48771" :
        ev.kind === "analysis" ? "#c586c0" : "#4fc1ff";
      ctx.strokeStyle = color;
      ctx.globalAlpha = 0.35;
      ctx.beginPath();
      ctx.moveTo(x, AXIS + MARKERS);
      ctx.lineTo(x, height);
      ctx.stroke();
      ctx.globalAlpha = 1;
      ctx.fillStyle = color;
      ctx.beginPath();
      ctx.moveTo(x - 5, AXIS);
      ctx.lineTo(x + 5, AXIS);
      ctx.lineTo(x, AXIS + MARKERS - 2);
      ctx.closePath();
      ctx.fill();
    }
  }

  private drawHover(ctx: CanvasRenderingContext2D, width: number, height: number): void {
    if (!this.mouse || this.drag?.moved) {
      this.tip.hidden = true;
      return;
    }
    const { x, y } = this.mouse;
    ctx.strokeStyle = "#666";
    ctx.beginPath();
    ctx.moveTo(Math.round(x) + 0.5, AXIS);
    ctx.lineTo(Math.round(x) + 0.5, height);
    ctx.stroke();
    const t = xToTime(x, this.view, width);
    const lines: string[] = [];
    const marker = this.markerAt(x, y, width);
    const hit = hitTest(this.rects.map((r) => r.rect), x, y);
    if (marker !== undefined) {
      const ev = this.log[marker];
      lines.push(`${formatDuration(ev.time)} ${ev.kind}`, ev.message.slice(0, 200));
    } else if (hit) {
      const frame = this.frames()[hit.call.frame];
      lines.push(frame?.name ?? `#${hit.call.frame}`,
        `${formatDuration(hit.call.start)} + ${formatDuration(hit.call.duration)}` +
        (hit.call.count > 1 ? ` (${hit.call.count} calls merged)` : ""));
      if (frame) lines.push(`${frame.file}:${frame.first_line}`);
      if (isImportFrame(frame) && hit.call.duration >= SLOW_IMPORT) lines.push("⚠ slow import");
    } else if (y < AXIS + MARKERS + RESOURCE_H + 6 && this.status) {
      const v = resourcesAt(this.statusDetail?.series ?? this.status, t);
      if (v) {
        lines.push(`at ${formatDuration(t)}`, `CPU ${v.cpu.toFixed(0)}%`, `Memory ${formatBytes(v.rss)}`,
          `Modules ${v.modules}`, `Heap objects ${v.objects.toLocaleString("en")}`);
      }
    }
    if (lines.length === 0) {
      this.tip.hidden = true;
      return;
    }
    this.tip.replaceChildren(...lines.map((l, i) => el("div", l, i === 0 ? "tip-title" : undefined)));
    this.tip.hidden = false;
    const box = this.canvas.getBoundingClientRect();
    const host = this.element.getBoundingClientRect();
    const left = box.left - host.left + x + 14;
    this.tip.style.left = `${Math.min(left, host.width - 260)}px`;
    this.tip.style.top = `${box.top - host.top + y + 14}px`;
  }

  private markerAt(x: number, y: number, width: number): number | undefined {
    if (y > AXIS + MARKERS || y < AXIS - 4) return undefined;
    let best: number | undefined;
    let bestDx = 6;
    this.log.forEach((ev, i) => {
      const dx = Math.abs(timeToX(ev.time, this.view, width) - x);
      if (dx < bestDx) {
        bestDx = dx;
        best = i;
      }
    });
    return best;
  }

  private local(e: MouseEvent): { x: number; y: number } {
    const box = this.canvas.getBoundingClientRect();
    return { x: e.clientX - box.left, y: e.clientY - box.top };
  }

  private onWheel(e: WheelEvent): void {
    e.preventDefault();
    const { x } = this.local(e);
    if (e.shiftKey || Math.abs(e.deltaX) > Math.abs(e.deltaY)) {
      this.setView(panBy(this.view, -(e.deltaX || e.deltaY), this.width(), this.duration));
    } else {
      this.setView(zoomAt(this.view, x, this.width(), wheelFactor(e.deltaY), this.duration));
    }
  }

  private onDown(e: MouseEvent): void {
    if (e.button !== 0) return;
    e.preventDefault();
    this.drag = { x: e.clientX, view: { ...this.view }, moved: false };
  }

  private onMove(e: MouseEvent): void {
    if (this.drag) {
      const dx = e.clientX - this.drag.x;
      if (Math.abs(dx) > 3) this.drag.moved = true;
      if (this.drag.moved) {
        this.view = panBy(this.drag.view, dx, this.width(), this.duration);
        this.scheduleFetch();
      }
    }
    if (e.target === this.canvas || this.drag) {
      this.mouse = this.local(e);
      this.requestDraw();
    }
  }

  private onUp(e: MouseEvent): void {
    const drag = this.drag;
    this.drag = undefined;
    if (!drag || drag.moved || e.target !== this.canvas) return;
    const { x, y } = this.local(e);
    const marker = this.markerAt(x, y, this.width());
    if (marker !== undefined) {
      this.onLog(marker);
      return;
    }
    const hit = this.rects.find((r) => r.rect === hitTest(this.rects.map((q) => q.rect), x, y));
    if (hit) {
      this.onPick({ call: hit.rect.call, frame: this.frames()[hit.rect.call.frame],
        thread: hit.thread, x: e.clientX, y: e.clientY });
    }
  }
}
