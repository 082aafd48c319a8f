// Data-to-pixels: pure functions shared by the canvas views (no DOM here, so
// the unit tests in tests/ui/unit run them under node). A View is the visible
// time window in seconds since the run's start; x = 0 is view.start and
// x = width is view.end.

import type { Call, FlameNode, FrameInfo, StatusSeries } from "./api";

export interface View {
  start: number;
  end: number;
}

/** The shortest window a zoom may reach: 100 µs (well under one sample). */
export const MIN_SPAN = 1e-4;

export function timeToX(t: number, view: View, width: number): number {
  return ((t - view.start) / (view.end - view.start)) * width;
}

export function xToTime(x: number, view: View, width: number): number {
  return view.start + (x / width) * (view.end - view.start);
}

/** Keeps view inside [0, duration] while keeping its span when possible. */
export function clampView(view: View, duration: number): View {
  const total = Math.max(duration, MIN_SPAN);
  let span = Math.min(Math.max(view.end - view.start, MIN_SPAN), total);
  let start = Math.min(Math.max(view.start, 0), total - span);
  if (!Number.isFinite(start)) start = 0;
  if (!Number.isFinite(span)) span = total;
  return { start, end: start + span };
}

/**
 * Zooms by factor (< 1 zooms in) around the time under pixel x, so the point
 * under the mouse stays under the mouse.
 */
export function zoomAt(view: View, x: number, width: number, factor: number,
  duration: number): View {
  const anchor = xToTime(x, view, width);
  const span = Math.max((view.end - view.start) * factor, MIN_SPAN);
  const ratio = width > 0 ? x / width : 0.5;
  return clampView({ start: anchor - span * ratio, end: anchor - span * ratio + span }, duration);
}

/** Moves the window by dx pixels (dx > 0 drags the content right: earlier times). */
export function panBy(view: View, dx: number, width: number, duration: number): View {
  const dt = (dx / width) * (view.end - view.start);
  return clampView({ start: view.start - dt, end: view.end - dt }, duration);
}

/** The factor a wheel delta zooms by: smooth, symmetric in and out. */
export function wheelFactor(deltaY: number): number {
  return Math.exp(Math.max(-500, Math.min(500, deltaY)) * 0.002);
}

export interface CallRect {
  x: number;
  y: number;
  w: number;
  h: number;
  call: Call;
}

/**
 * Rectangles of the calls that intersect the view, one row of rowHeight per
 * depth starting at top. Widths are at least minWidth pixels, so a short call
 * stays visible; x is clipped to the canvas so huge zooms stay finite.
 */
export function layoutCalls(calls: Call[], view: View, width: number, top: number,
  rowHeight: number, minWidth = 1): CallRect[] {
  const rects: CallRect[] = [];
  for (const call of calls) {
    const end = call.start + call.duration;
    if (end < view.start || call.start > view.end) continue;
    let x0 = timeToX(call.start, view, width);
    let x1 = timeToX(end, view, width);
    x0 = Math.max(x0, -1);
    x1 = Math.min(x1, width + 1);
    rects.push({ x: x0, y: top + call.depth * rowHeight, w: Math.max(x1 - x0, minWidth),
      h: rowHeight - 1, call });
  }
  return rects;
}

/** Deepest depth in calls plus one (the number of rows a thread needs). */
export function rowsOf(calls: Call[]): number {
  let rows = 0;
  for (const c of calls) rows = Math.max(rows, c.depth + 1);
  return rows;
}

/** The topmost rect containing (x, y), or undefined. */
export function hitTest<T extends { x: number; y: number; w: number; h: number }>(
  rects: T[], x: number, y: number): T | undefined {
  for (let i = rects.length - 1; i >= 0; i--) {
    const r = rects[i];
    if (x >= r.x && x <= r.x + r.w && y >= r.y && y <= r.y + r.h) return r;
  }
  return undefined;
}

/** Index of the sample at or before t in ascending times (0 when t is before all). */
export function indexAt(times: number[], t: number): number {
  let lo = 0;
  let hi = times.length - 1;
  if (hi < 0) return -1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (times[mid] <= t) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

/** Maximum of a series (at least floor, so a flat zero line sits at the bottom). */
export function seriesMax(values: number[], floor = 1): number {
  let max = floor;
  for (const v of values) if (v > max) max = v;
  return max;
}

/**
 * The value range a resource line is drawn over. CPU is a percentage: 0 to
 * at least 100. The others (bytes, counts) use their own minimum and maximum
 * with a margin, so a change of a few percent is visible; a flat series sits
 * in the middle.
 */
export function seriesRange(values: number[], percent: boolean): { lo: number; hi: number } {
  if (percent) return { lo: 0, hi: seriesMax(values, 100) };
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of values) {
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  if (!Number.isFinite(lo)) return { lo: 0, hi: 1 };
  const pad = (hi - lo) * 0.08 || Math.max(Math.abs(hi) * 0.5, 1);
  return { lo: lo - pad, hi: hi + pad };
}

/**
 * Polyline points for a resource line: the value max maps to top and lo
 * (default 0) to top + height. Points outside the view are dropped except one on each side,
 * so the line reaches the edges.
 */
export function seriesPoints(times: number[], values: number[], view: View, width: number,
  top: number, height: number, max: number, lo = 0): number[] {
  const pts: number[] = [];
  const n = Math.min(times.length, values.length);
  for (let i = 0; i < n; i++) {
    if (times[i] < view.start && i + 1 < n && times[i + 1] < view.start) continue;
    pts.push(timeToX(times[i], view, width), top + height - ((values[i] - lo) / (max - lo)) * height);
    if (times[i] > view.end) break;
  }
  return pts;
}

export type ResourceKey = "cpu" | "rss" | "modules" | "objects";

/** The four resource lines of the original: green CPU, red memory, yellow modules, white heap objects. */
export const RESOURCES: { key: ResourceKey; label: string; color: string }[] = [
  { key: "cpu", label: "CPU", color: "#3fcf5f" },
  { key: "rss", label: "Memory", color: "#ff4d4d" },
  { key: "modules", label: "Modules", color: "#ffd83d" },
  { key: "objects", label: "Heap objects", color: "#ffffff" },
];

/** The values of the four resources at time t (the tick at or before t). */
export function resourcesAt(series: StatusSeries, t: number):
  { time: number; cpu: number; rss: number; modules: number; objects: number } | undefined {
  const i = indexAt(series.time, t);
  if (i < 0) return undefined;
  return { time: series.time[i], cpu: series.cpu[i] ?? 0, rss: series.rss[i] ?? 0,
    modules: series.modules[i] ?? 0, objects: series.objects[i] ?? 0 };
}

/** Tick marks every 1, 2 or 5 × 10^k seconds, about one per 100 pixels. */
export function timeTicks(view: View, width: number): number[] {
  const span = view.end - view.start;
  if (!(span > 0) || !(width > 0)) return [];
  const raw = span / Math.max(1, width / 100);
  const pow = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 5, 10].map((m) => m * pow).find((s) => s >= raw) ?? raw;
  const ticks: number[] = [];
  for (let t = Math.ceil(view.start / step) * step; t <= view.end + 1e-12; t += step) {
    ticks.push(Number(t.toPrecision(12)));
    if (ticks.length > 1000) break;
  }
  return ticks;
}

/** "1.23 s", "45.6 ms", "789 µs". */
export function formatDuration(s: number): string {
  const a = Math.abs(s);
  if (a >= 60) return `${Math.floor(s / 60)}m ${(s % 60).toFixed(1)}s`;
  if (a >= 1) return `${s.toFixed(2)} s`;
  if (a >= 1e-3) return `${(s * 1e3).toFixed(1)} ms`;
  return `${(s * 1e6).toFixed(0)} µs`;
}

export function formatBytes(n: number): string {
  if (n >= 1 << 30) return `${(n / (1 << 30)).toFixed(2)} GB`;
  if (n >= 1 << 20) return `${(n / (1 << 20)).toFixed(1)} MB`;
  if (n >= 1 << 10) return `${(n / (1 << 10)).toFixed(1)} KB`;
  return `${n} B`;
}

/** A stable colour per function name: warm hues, like a flame graph. */
export function colorOf(name: string): string {
  let h = 2166136261;
  for (let i = 0; i < name.length; i++) {
    h ^= name.charCodeAt(i);
    h = Math.imul(h, 16777619);
  }
  h = Math.imul(h ^ (h >>> 15), 2246822507) >>> 0;
  const hue = 8 + (h % 48);
  const sat = 65 + ((h >>> 8) % 25);
  const light = 46 + ((h >>> 16) % 16);
  return `hsl(${hue}, ${sat}%, ${light}%)`;
}

/** The link that opens file:line in VS Code. */
export function sourceLink(file: string, line: number): string {
  const path = file.replace(/^\/+/, "").split("/").map(encodeURIComponent).join("/");
  return `vscode://file/${path}:${line}`;
}

/** True for the frame of an import (importlib's loader), as the timeline flags slow ones. */
export function isImportFrame(frame: FrameInfo | undefined): boolean {
  if (!frame) return false;
  return /importlib/.test(frame.file + " " + frame.name) && /_find_and_load$/.test(frame.name);
}

/** A slow import takes at least this long. */
export const SLOW_IMPORT = 0.1;

export interface FlameRect {
  x: number;
  y: number;
  w: number;
  h: number;
  node: FlameNode;
  depth: number;
}

/**
 * Icicle layout of a flame graph: the root spans the full width at the top,
 * children left to right in their given order, width proportional to value.
 * focus (a node inside root) is drawn full width instead, with its ancestors
 * as full-width bars above it. Nodes narrower than minWidth are skipped.
 */
export function layoutFlame(root: FlameNode, width: number, rowHeight: number,
  focus?: FlameNode, minWidth = 0.5): FlameRect[] {
  const rects: FlameRect[] = [];
  const path = focus ? pathTo(root, focus) : undefined;
  let base = root;
  let depth0 = 0;
  if (path && path.length) {
    for (let i = 0; i < path.length - 1; i++) {
      rects.push({ x: 0, y: i * rowHeight, w: width, h: rowHeight - 1, node: path[i], depth: i });
    }
    base = path[path.length - 1];
    depth0 = path.length - 1;
  }
  const scale = base.value > 0 ? width / base.value : 0;
  const walk = (node: FlameNode, x: number, depth: number) => {
    const w = node.value * scale;
    if (w < minWidth) return;
    rects.push({ x, y: depth * rowHeight, w, h: rowHeight - 1, node, depth });
    let cx = x;
    for (const child of node.children) {
      walk(child, cx, depth + 1);
      cx += child.value * scale;
    }
  };
  walk(base, 0, depth0);
  return rects;
}

/** The nodes from root down to target (inclusive), or undefined when absent. */
export function pathTo(root: FlameNode, target: FlameNode): FlameNode[] | undefined {
  if (root === target) return [root];
  for (const child of root.children) {
    const p = pathTo(child, target);
    if (p) return [root, ...p];
  }
  return undefined;
}

/** Depth of the deepest node (the root is depth 0). */
export function flameDepth(node: FlameNode): number {
  let d = 0;
  for (const c of node.children) d = Math.max(d, 1 + flameDepth(c));
  return d;
}
