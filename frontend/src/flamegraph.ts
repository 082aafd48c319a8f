// The flame graph: the aggregated call tree (GET flamegraph?start&end&threads)
// for the threads ticked in the timeline and the timeline's visible window,
// drawn on canvas as an icicle (root on top). Click a node to zoom into it
// (and open its call popup), click the root bar to zoom out; search matches
// are highlighted.

import { Flamegraph, FlameNode, runFlamegraph } from "./api";
import { el, fitCanvas, fitText } from "./dom";
import { colorOf, flameDepth, formatDuration, FlameRect, hitTest, layoutFlame, View } from "./scale";
import { matches, Search } from "./search";

const ROW = 18;

export class FlamegraphView {
  readonly element = el("div", undefined, "flamegraph");
  private readonly info = el("div", undefined, "muted");
  private readonly canvas = el("canvas");
  private readonly tip = el("div", undefined, "tip");
  private data?: Flamegraph;
  private focus?: FlameNode;
  private rects: FlameRect[] = [];
  private search: Search = { text: "" };
  private key = "";

  constructor(private readonly onPick: (node: FlameNode, x: number, y: number) => void) {
    const scroller = el("div", undefined, "flame-scroll");
    scroller.append(this.canvas);
    this.element.append(this.info, scroller, this.tip);
    this.tip.hidden = true;
    this.canvas.addEventListener("click", (e) => {
      const r = this.at(e);
      if (!r) return;
      this.focus = r.node === this.focus || r.depth === 0 ? undefined : r.node;
      if (r.depth > 0) this.onPick(r.node, e.clientX, e.clientY);
      this.draw();
    });
    this.canvas.addEventListener("mousemove", (e) => {
      const r = this.at(e);
      if (!r || !this.data) {
        this.tip.hidden = true;
        return;
      }
      const pct = this.data.root.value > 0 ? (100 * r.node.value) / this.data.root.value : 0;
      this.tip.replaceChildren(el("div", r.node.name, "tip-title"),
        el("div", `${formatDuration(r.node.value)} total (${pct.toFixed(1)}%), ${formatDuration(r.node.self)} self`),
        el("div", r.node.file ? `${r.node.file}:${r.node.first_line ?? r.node.line}` : ""));
      this.tip.hidden = false;
      const host = this.element.getBoundingClientRect();
      this.tip.style.left = `${Math.min(e.clientX - host.left + 14, host.width - 260)}px`;
      this.tip.style.top = `${e.clientY - host.top + 14}px`;
    });
    this.canvas.addEventListener("mouseleave", () => (this.tip.hidden = true));
    new ResizeObserver(() => this.draw()).observe(scroller);
  }

  /** Fetches the tree for the window and threads unless it is the one shown. */
  async load(run: string, view: View, threads: number[], whole: boolean): Promise<void> {
    const key = JSON.stringify([run, whole ? null : [view.start, view.end], threads]);
    if (key === this.key) return;
    this.key = key;
    this.info.textContent = "Loading…";
    try {
      const data = await runFlamegraph(run, whole ? { threads } : { start: view.start, end: view.end, threads });
      if (key !== this.key) return;
      this.data = data;
      this.focus = undefined;
      this.info.textContent = `${formatDuration(data.total)} sampled` +
        (whole ? ", whole run" : `, window ${formatDuration(view.start)} – ${formatDuration(view.end)}`) +
        `, ${threads.length === 0 ? "all threads" : `${threads.length} thread${threads.length === 1 ? "" : "s"}`}` +
        ". Click a frame to zoom in, the top bar to zoom out.";
      this.draw();
    } catch (error) {
      if (key === this.key) this.info.textContent = `Flame graph: ${(error as Error).message}`;
      this.key = "";
    }
  }

  setSearch(search: Search): void {
    this.search = search;
    this.draw();
  }

  /** Nodes drawn in the last frame that match the search. */
  matchCount(): number {
    return this.rects.filter((r) => matches(this.search, r.node.name, r.node.file)).length;
  }

  draw(): void {
    if (!this.data || !this.element.isConnected) return;
    const width = Math.max(100, (this.canvas.parentElement?.clientWidth ?? 800) - 2);
    const height = (flameDepth(this.data.root) + 1) * ROW + 4;
    const ctx = fitCanvas(this.canvas, width, height);
    ctx.fillStyle = "#1b1b1b";
    ctx.fillRect(0, 0, width, height);
    this.rects = layoutFlame(this.data.root, width, ROW, this.focus);
    const searching = this.search.regex !== undefined;
    ctx.font = "12px system-ui, sans-serif";
    ctx.textBaseline = "middle";
    let hits = 0;
    for (const r of this.rects) {
      const hit = searching && matches(this.search, r.node.name, r.node.file);
      if (hit) hits++;
      ctx.globalAlpha = searching && !hit ? 0.35 : 1;
      ctx.fillStyle = hit ? "#ff00ff" : r.depth === 0 ? "#555" : colorOf(r.node.name);
      ctx.fillRect(r.x, r.y, Math.max(r.w - 0.5, 0.5), r.h);
      const label = fitText(ctx, r.node.name, r.w - 6);
      if (label) {
        ctx.fillStyle = r.depth === 0 ? "#eee" : "#111";
        ctx.fillText(label, r.x + 3, r.y + r.h / 2 + 1);
      }
    }
    ctx.globalAlpha = 1;
    this.canvas.dataset.nodes = String(this.rects.length);
    this.canvas.dataset.matches = searching ? String(hits) : "";
  }

  private at(e: MouseEvent): FlameRect | undefined {
    const box = this.canvas.getBoundingClientRect();
    return hitTest(this.rects, e.clientX - box.left, e.clientY - box.top);
  }
}
