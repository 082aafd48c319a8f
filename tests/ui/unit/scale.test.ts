// Data-to-pixels of the timeline and flame graph (frontend/src/scale.ts),
// on contract-shaped data (/api/v1/runs/{run}/timeline, /status, /flamegraph).
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  clampView, colorOf, formatDuration, hitTest, indexAt, isImportFrame, layoutCalls, layoutFlame,
  MIN_SPAN, panBy, resourcesAt, rowsOf, seriesPoints, seriesRange, sourceLink, timeTicks, timeToX, wheelFactor,
  xToTime, zoomAt, flameDepth, pathTo,
} from "../../../frontend/src/scale";
import type { Call, FlameNode, StatusSeries } from "../../../frontend/src/api";

const near = (a: number, b: number, eps = 1e-9) => assert.ok(Math.abs(a - b) <= eps, `${a} != ${b}`);

test("time and x map both ways across the view", () => {
  const view = { start: 10, end: 20 };
  assert.equal(timeToX(10, view, 1000), 0);
  assert.equal(timeToX(20, view, 1000), 1000);
  assert.equal(timeToX(15, view, 1000), 500);
  near(xToTime(250, view, 1000), 12.5);
  near(xToTime(timeToX(17.3, view, 640), view, 640), 17.3);
});

test("zooming keeps the time under the mouse under the mouse", () => {
  const view = { start: 0, end: 100 };
  const z = zoomAt(view, 300, 1000, 0.5, 100);
  near(z.end - z.start, 50);
  near(xToTime(300, z, 1000), 30);
  const out = zoomAt(z, 300, 1000, 2, 100);
  near(out.end - out.start, 100);
  near(out.start, 0);
});

test("zoom stops at the minimum span and at the whole run", () => {
  let v = { start: 0, end: 10 };
  for (let i = 0; i < 200; i++) v = zoomAt(v, 500, 1000, 0.5, 10);
  near(v.end - v.start, MIN_SPAN, 1e-12);
  for (let i = 0; i < 200; i++) v = zoomAt(v, 500, 1000, 2, 10);
  assert.deepEqual(v, { start: 0, end: 10 });
});

test("panning moves by pixels and stays inside the run", () => {
  const v = { start: 10, end: 20 };
  const p = panBy(v, 100, 1000, 100); // drag right by 10% of the view: one second earlier
  near(p.start, 9);
  near(p.end, 19);
  assert.deepEqual(panBy(v, 100000, 1000, 100), { start: 0, end: 10 });
  assert.deepEqual(panBy(v, -100000, 1000, 100), { start: 90, end: 100 });
});

test("clampView repairs windows outside the run", () => {
  assert.deepEqual(clampView({ start: -5, end: 5 }, 100), { start: 0, end: 10 });
  assert.deepEqual(clampView({ start: 0, end: 500 }, 100), { start: 0, end: 100 });
  const tiny = clampView({ start: 3, end: 3 }, 100);
  near(tiny.end - tiny.start, MIN_SPAN);
});

test("wheel factor zooms in for negative deltas and is symmetric", () => {
  assert.ok(wheelFactor(-100) < 1 && wheelFactor(100) > 1);
  near(wheelFactor(-100) * wheelFactor(100), 1);
  assert.ok(Number.isFinite(wheelFactor(1e9)));
});

const calls: Call[] = [
  { start: 0, duration: 10, depth: 0, frame: "1", count: 1 },
  { start: 1, duration: 3, depth: 1, frame: "2", count: 1 },
  { start: 5, duration: 0.001, depth: 1, frame: "3", count: 1 },
  { start: 50, duration: 1, depth: 2, frame: "4", count: 7 },
];

test("calls become rows by depth, cut to the view, at least one pixel wide", () => {
  const rects = layoutCalls(calls, { start: 0, end: 10 }, 1000, 40, 16);
  assert.equal(rects.length, 3, "the call at 50 s is outside the view");
  assert.deepEqual([rects[0].x, rects[0].w, rects[0].y], [0, 1000, 40]);
  assert.deepEqual([rects[1].x, rects[1].w, rects[1].y], [100, 300, 56]);
  assert.equal(rects[2].w, 1, "a 1 ms call is widened to one pixel");
  assert.equal(rowsOf(calls), 3);
  const zoomed = layoutCalls(calls, { start: 2, end: 3 }, 1000, 0, 16);
  assert.ok(zoomed[0].x >= -1 && zoomed[0].x + zoomed[0].w <= 1002, "clipped to the canvas");
});

test("hitTest finds the topmost rect under the point", () => {
  const rects = layoutCalls(calls, { start: 0, end: 10 }, 1000, 0, 16);
  assert.equal(hitTest(rects, 150, 20)?.call.frame, "2");
  assert.equal(hitTest(rects, 150, 5)?.call.frame, "1");
  assert.equal(hitTest(rects, 150, 100), undefined);
});

const series: StatusSeries = {
  time: [0, 1, 2, 3], cpu: [0, 50, 100, 25], system_cpu: [0, 1, 2, 3],
  rss: [100, 200, 300, 400], memory_total: [1, 1, 1, 1], memory_free: [1, 1, 1, 1],
  modules: [10, 20, 30, 40], objects: [1000, 2000, 3000, 4000],
};

test("resource lines map value 0 to the bottom and the maximum to the top", () => {
  const pts = seriesPoints(series.time, series.cpu, { start: 0, end: 3 }, 300, 10, 100, 100);
  assert.deepEqual(pts, [0, 110, 100, 60, 200, 10, 300, 85]);
  const part = seriesPoints(series.time, series.cpu, { start: 1.5, end: 2.5 }, 100, 0, 100, 100);
  assert.equal(part.length / 2, 3, "one point beyond each edge of the view");
});

test("resource ranges: CPU from 0 to 100 %, the others around their own values", () => {
  assert.deepEqual(seriesRange(series.cpu, true), { lo: 0, hi: 100 });
  assert.deepEqual(seriesRange([0, 250], true), { lo: 0, hi: 250 }, "several cores");
  const r = seriesRange(series.rss, false);
  assert.ok(r.lo < 100 && r.lo > 50 && r.hi > 400 && r.hi < 450, JSON.stringify(r));
  const flat = seriesRange([7, 7, 7], false);
  assert.equal((flat.lo + flat.hi) / 2, 7, "a flat line sits in the middle");
  const pts = seriesPoints([0, 1], [100, 400], { start: 0, end: 1 }, 100, 0, 100, 400, 100);
  assert.deepEqual(pts, [0, 100, 100, 0]);
});

test("the hover popup reads the tick at or before the mouse", () => {
  assert.equal(indexAt(series.time, -1), 0);
  assert.equal(indexAt(series.time, 1.99), 1);
  assert.equal(indexAt(series.time, 99), 3);
  assert.equal(indexAt([], 1), -1);
  assert.deepEqual(resourcesAt(series, 2.5), { time: 2, cpu: 100, rss: 300, modules: 30, objects: 3000 });
});

test("time ticks are round numbers about 100 px apart", () => {
  const ticks = timeTicks({ start: 0, end: 10 }, 1000);
  assert.deepEqual(ticks, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  const fine = timeTicks({ start: 1.0001, end: 1.0021 }, 500);
  assert.ok(fine.length >= 3 && fine.length <= 6, String(fine));
  assert.deepEqual(timeTicks({ start: 0, end: 0 }, 100), []);
});

test("formatting and colours", () => {
  assert.equal(formatDuration(2.5), "2.50 s");
  assert.equal(formatDuration(0.0123), "12.3 ms");
  assert.equal(formatDuration(0.000042), "42 µs");
  assert.equal(formatDuration(125), "2m 5.0s");
  assert.equal(colorOf("a.b"), colorOf("a.b"));
  assert.notEqual(colorOf("a.b"), colorOf("a.c"));
});

test("source links open the file at the line in VS Code", () => {
  assert.equal(sourceLink("/home/me/app/main.py", 42), "vscode://file/home/me/app/main.py:42");
  assert.equal(sourceLink("/a b/c#.py", 1), "vscode://file/a%20b/c%23.py:1");
});

test("imports are recognised by importlib's loader frame", () => {
  const f = (name: string, file: string) => ({ name, file, line: 1, first_line: 1, module: "", flags: 0 });
  assert.ok(isImportFrame(f("importlib._bootstrap._find_and_load", "<frozen importlib._bootstrap>")));
  assert.ok(!isImportFrame(f("app.find_and_load_data", "/app.py")));
  assert.ok(!isImportFrame(undefined));
});

const leaf = (name: string, value: number): FlameNode => ({ name, value, self: value, children: [] });
const flame: FlameNode = {
  name: "all", value: 10, self: 0, children: [
    { name: "main", value: 8, self: 1, children: [leaf("work", 6), leaf("io", 1)] },
    leaf("gc", 2),
  ],
};

test("the flame graph is laid out by value, children left to right", () => {
  const rects = layoutFlame(flame, 1000, 20);
  const by = (n: string) => rects.find((r) => r.node.name === n)!;
  assert.deepEqual([by("all").x, by("all").w, by("all").y], [0, 1000, 0]);
  assert.deepEqual([by("main").x, by("main").w, by("main").y], [0, 800, 20]);
  assert.deepEqual([by("gc").x, by("gc").w], [800, 200]);
  assert.deepEqual([by("work").x, by("work").w, by("work").y], [0, 600, 40]);
  assert.deepEqual([by("io").x, by("io").w], [600, 100]);
  assert.equal(flameDepth(flame), 2);
});

test("focusing a flame graph node draws it full width under its ancestors", () => {
  const main = flame.children[0];
  const rects = layoutFlame(flame, 1000, 20, main.children[1]);
  const io = rects.find((r) => r.node.name === "io")!;
  assert.deepEqual([io.x, io.w, io.y], [0, 1000, 40]);
  assert.equal(rects.find((r) => r.node.name === "gc"), undefined, "siblings are hidden");
  assert.deepEqual(pathTo(flame, main.children[1])!.map((n) => n.name), ["all", "main", "io"]);
  assert.equal(layoutFlame(flame, 1000, 20, undefined, 250).length, 3, "narrow nodes skipped");
});
