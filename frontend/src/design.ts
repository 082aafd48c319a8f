// The Design tab: the call graph aggregated by module and class
// (GET design), drawn as an SVG diagram. Line thickness is the time spent in
// the calls along that edge; node size follows the node's time. Nodes can be
// dragged to rearrange the graph. The layout is a small deterministic force
// simulation (no randomness, so the same run always looks the same).

import { Design, DesignEdge, DesignNode, runDesign } from "./api";
import { el } from "./dom";
import { colorOf, formatDuration } from "./scale";
import { matches, Search } from "./search";

export interface Point {
  x: number;
  y: number;
}

/**
 * Positions for the nodes inside width × height: start on a circle (ordered
 * by time, so the heaviest are spread apart), then iterations of repulsion
 * between all nodes and attraction along edges, clamped to the box.
 */
export function layoutDesign(nodes: DesignNode[], edges: DesignEdge[], width: number,
  height: number, iterations = 200): Map<string, Point> {
  const pos = new Map<string, Point>();
  const n = nodes.length;
  const cx = width / 2;
  const cy = height / 2;
  const r = Math.min(width, height) * 0.38;
  nodes.forEach((node, i) => {
    const a = (2 * Math.PI * i) / Math.max(n, 1);
    pos.set(node.id, { x: cx + r * Math.cos(a), y: cy + r * Math.sin(a) });
  });
  if (n < 2) {
    if (n === 1) pos.set(nodes[0].id, { x: cx, y: cy });
    return pos;
  }
  const k = Math.sqrt((width * height) / n) * 0.6;
  const margin = 40;
  for (let it = 0; it < iterations; it++) {
    const temp = (Math.min(width, height) / 10) * (1 - it / iterations) + 1;
    const disp = new Map<string, Point>(nodes.map((nd) => [nd.id, { x: 0, y: 0 }]));
    for (let i = 0; i < n; i++) {
      for (let j = i + 1; j < n; j++) {
        const a = pos.get(nodes[i].id)!;
        const b = pos.get(nodes[j].id)!;
        let dx = a.x - b.x;
        let dy = a.y - b.y;
        let d = Math.hypot(dx, dy);
        if (d < 0.01) {
          dx = 0.01 * (i + 1);
          dy = 0.01;
          d = Math.hypot(dx, dy);
        }
        const f = (k * k) / d;
        const da = disp.get(nodes[i].id)!;
        const db = disp.get(nodes[j].id)!;
        da.x += (dx / d) * f;
        da.y += (dy / d) * f;
        db.x -= (dx / d) * f;
        db.y -= (dy / d) * f;
      }
    }
    for (const e of edges) {
      const a = pos.get(e.source);
      const b = pos.get(e.target);
      if (!a || !b || e.source === e.target) continue;
      const dx = a.x - b.x;
      const dy = a.y - b.y;
      const d = Math.max(Math.hypot(dx, dy), 0.01);
      const f = (d * d) / k;
      const da = disp.get(e.source)!;
      const db = disp.get(e.target)!;
      da.x -= (dx / d) * f;
      da.y -= (dy / d) * f;
      db.x += (dx / d) * f;
      db.y += (dy / d) * f;
    }
    for (const nd of nodes) {
      const p = pos.get(nd.id)!;
      const d = disp.get(nd.id)!;
      const len = Math.max(Math.hypot(d.x, d.y), 0.01);
      p.x = Math.min(width - margin, Math.max(margin, p.x + (d.x / len) * Math.min(len, temp)));
      p.y = Math.min(height - margin, Math.max(margin, p.y + (d.y / len) * Math.min(len, temp)));
    }
  }
  return pos;
}

/** Stroke width of an edge: 1 px to 14 px, by its share of the heaviest edge's time. */
export function edgeWidth(time: number, maxTime: number): number {
  if (!(maxTime > 0)) return 1;
  return 1 + 13 * Math.sqrt(Math.max(0, time) / maxTime);
}

const SVG = "http://www.w3.org/2000/svg";

function svg<K extends keyof SVGElementTagNameMap>(tag: K, attrs: Record<string, string | number>):
  SVGElementTagNameMap[K] {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  return node;
}

export class DesignView {
  readonly element = el("div", undefined, "design");
  private readonly info = el("div", undefined, "muted");
  private readonly root = svg("svg", { width: 900, height: 600 });
  private data?: Design;
  private run = "";
  private search: Search = { text: "" };

  constructor() {
    this.element.append(this.info, this.root);
  }

  async load(run: string): Promise<void> {
    if (run === this.run && this.data) return;
    this.run = run;
    this.info.textContent = "Loading…";
    try {
      const data = await runDesign(run);
      if (run !== this.run) return;
      this.data = data;
      this.info.textContent = `${data.nodes.length} modules and classes, ${data.edges.length} call edges. ` +
        "Line thickness is time spent in the calls; drag a node to move it.";
      this.draw();
    } catch (error) {
      if (run === this.run) this.info.textContent = `Design: ${(error as Error).message}`;
      this.run = "";
    }
  }

  setSearch(search: Search): void {
    this.search = search;
    this.root.querySelectorAll<SVGGElement>("g.node").forEach((g) => {
      const hit = matches(search, g.dataset.id);
      g.classList.toggle("match", hit);
    });
  }

  private draw(): void {
    const data = this.data!;
    const width = Math.max(600, this.element.clientWidth - 20);
    const height = Math.max(420, Math.min(900, 120 + data.nodes.length * 28));
    this.root.setAttribute("width", String(width));
    this.root.setAttribute("height", String(height));
    const pos = layoutDesign(data.nodes, data.edges, width, height);
    const maxEdge = Math.max(0, ...data.edges.map((e) => e.time));
    const maxNode = Math.max(1e-9, ...data.nodes.map((nd) => nd.time));
    const defs = svg("defs", {});
    const marker = svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5,
      markerWidth: 10, markerHeight: 10, markerUnits: "userSpaceOnUse", orient: "auto-start-reverse" });
    marker.append(svg("path", { d: "M 0 0 L 10 5 L 0 10 z", fill: "#888" }));
    defs.append(marker);
    const edgeLayer = svg("g", { class: "edges" });
    const nodeLayer = svg("g", { class: "nodes" });
    const lines: { line: SVGLineElement; edge: DesignEdge }[] = [];
    for (const e of data.edges) {
      if (!pos.has(e.source) || !pos.has(e.target) || e.source === e.target) continue;
      const line = svg("line", { stroke: "#6a9955", "stroke-opacity": 0.7,
        "stroke-width": edgeWidth(e.time, maxEdge).toFixed(2), "marker-end": "url(#arrow)" });
      const title = svg("title", {});
      title.textContent = `${e.source} → ${e.target}: ${formatDuration(e.time)}, ${e.calls} calls`;
      line.append(title);
      edgeLayer.append(line);
      lines.push({ line, edge: e });
    }
    const radius = (nd: DesignNode) => 6 + 18 * Math.sqrt(nd.time / maxNode);
    const place = () => {
      for (const { line, edge } of lines) {
        const a = pos.get(edge.source)!;
        const b = pos.get(edge.target)!;
        const rb = radius(data.nodes.find((nd) => nd.id === edge.target)!);
        const d = Math.max(Math.hypot(b.x - a.x, b.y - a.y), 0.01);
        line.setAttribute("x1", a.x.toFixed(1));
        line.setAttribute("y1", a.y.toFixed(1));
        line.setAttribute("x2", (b.x - ((b.x - a.x) / d) * rb).toFixed(1));
        line.setAttribute("y2", (b.y - ((b.y - a.y) / d) * rb).toFixed(1));
      }
    };
    for (const nd of data.nodes) {
      const p = pos.get(nd.id)!;
      const g = svg("g", { class: `node ${nd.kind}`, transform: `translate(${p.x},${p.y})` });
      g.dataset.id = nd.id;
      const shape = nd.kind === "class"
        ? svg("rect", { x: -radius(nd), y: -radius(nd) * 0.7, width: 2 * radius(nd), height: 1.4 * radius(nd), rx: 4 })
        : svg("circle", { r: radius(nd) });
      shape.setAttribute("fill", colorOf(nd.module));
      const label = svg("text", { y: radius(nd) + 12, "text-anchor": "middle" });
      label.textContent = nd.name;
      const title = svg("title", {});
      title.textContent = `${nd.id} (${nd.kind}): ${formatDuration(nd.time)} total, ${formatDuration(nd.self)} self`;
      g.append(shape, label, title);
      g.addEventListener("pointerdown", (e) => {
        e.preventDefault();
        g.setPointerCapture(e.pointerId);
        const box = this.root.getBoundingClientRect();
        const move = (ev: PointerEvent) => {
          p.x = Math.min(width, Math.max(0, ev.clientX - box.left));
          p.y = Math.min(height, Math.max(0, ev.clientY - box.top));
          g.setAttribute("transform", `translate(${p.x},${p.y})`);
          place();
        };
        const up = () => {
          g.removeEventListener("pointermove", move);
          g.removeEventListener("pointerup", up);
        };
        g.addEventListener("pointermove", move);
        g.addEventListener("pointerup", up);
      });
      nodeLayer.append(g);
    }
    place();
    this.root.replaceChildren(defs, edgeLayer, nodeLayer);
    this.setSearch(this.search);
  }
}
