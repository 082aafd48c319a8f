// UI performance in headless Chromium against a real micrologd serving a
// generated recording (bench_ui_gen.c through the real ingest protocol):
// 1 hour at 100 Hz with 8 threads by default (ML_BENCH_UI_SECONDS to change).
//   first paint  time from opening the run's URL (cold page load) to the first
//                timeline frame with calls drawn; also from a click in the tree
//   zoom / pan   frames per second from requestAnimationFrame timestamps while
//                wheel or drag events are dispatched continuously
// Prints medians of ML_BENCH_REPS runs with their spread (min–max) side by
// side with the targets (≤ 2 s, ≥ 30 fps), and writes $ML_BENCH_OUT/ui.json.
// Never asserts on timings. Usage: node tests/bench/bench_ui.mjs GEN_EXE
import { execFileSync } from "node:child_process";
import { writeFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { get, launchBrowser, runPath, startCollector, waitComplete, artifact } from "../ui/e2e/harness.mjs";

const GEN = process.argv[2];
const SECONDS = Number(process.env.ML_BENCH_UI_SECONDS || 3600);
const THREADS = 8;
const REPS = Number(process.env.ML_BENCH_REPS || 5);

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const stats = (xs) => ({ median: median(xs), min: Math.min(...xs), max: Math.max(...xs), runs: xs });

async function measureFps(page, action) {
  await page.evaluate(() => {
    window.__frames = [];
    window.__draws0 = window.microlog.timeline.draws;
    const tick = (t) => {
      window.__frames.push(t);
      if (window.__frames.length < 100000) window.__raf = requestAnimationFrame(tick);
    };
    window.__raf = requestAnimationFrame(tick);
  });
  const t0 = Date.now();
  await action();
  const wall = (Date.now() - t0) / 1000;
  return page.evaluate((w) => {
    cancelAnimationFrame(window.__raf);
    const f = window.__frames;
    const span = (f[f.length - 1] - f[0]) / 1000;
    const gaps = f.slice(1).map((t, i) => t - f[i]).sort((a, b) => a - b);
    return { fps: (f.length - 1) / span, p95_frame_ms: gaps[Math.floor(gaps.length * 0.95)] ?? 0,
      draws: window.microlog.timeline.draws - window.__draws0, seconds: w };
  }, wall);
}

async function main() {
  const collector = await startCollector();
  const browser = await launchBrowser();
  try {
    const ingest = (await get(collector.http, "/api/v1/ingest")).body.ingest;
    const gen = JSON.parse(execFileSync(GEN, [ingest, String(SECONDS), String(THREADS)], { encoding: "utf8" }));
    const meta = await waitComplete(collector.http, gen.run, 120000);
    console.log(`recording: ${gen.run}, ${meta.samples.toLocaleString("en")} samples, ` +
      `${meta.duration.toFixed(0)} s, ${meta.threads.length} threads (generated in ${gen.seconds} s)`);
    const hash = "#" + gen.run.split("/").map(encodeURIComponent).join("/");
    const page = await browser.newPage({ viewport: { width: 1600, height: 1000 } });
    const cold = [];
    const click = [];
    const apiMs = [];
    for (let i = 0; i < REPS; i++) {
      const t = Date.now();
      await get(collector.http, runPath(gen.run, "timeline?width=1300"));
      apiMs.push(Date.now() - t);
      await page.goto("about:blank");
      await page.goto(`${collector.http}/${hash}`);
      await page.waitForFunction(() => window.microlog?.timeline.firstPaint > 0, null, { timeout: 60000 });
      cold.push(await page.evaluate(() => window.microlog.timeline.firstPaint / 1000));
      // Warm: the app is loaded; open another run and come back by clicking the tree.
      await page.goto(`${collector.http}/#`);
      await page.waitForSelector(`nav a[data-run="${gen.run}"]`);
      const t0 = await page.evaluate(() => {
        window.microlog.timeline.firstPaint = 0;
        return performance.now();
      });
      await page.click(`nav a[data-run="${gen.run}"]`);
      await page.waitForFunction(() => window.microlog.timeline.firstPaint > 0, null, { timeout: 60000 });
      click.push(await page.evaluate((s) => (window.microlog.timeline.firstPaint - s) / 1000, t0));
    }
    await page.screenshot({ path: artifact("bench-ui-timeline.png") });
    const box = await (await page.$(".timeline canvas")).boundingBox();
    const cx = box.x + box.width / 2;
    const cy = box.y + 150;
    const zoom = [];
    const pan = [];
    for (let i = 0; i < REPS; i++) {
      await page.evaluate(() => window.microlog.timeline.setView({ start: 0, end: 1e9 }));
      await page.mouse.move(cx, cy);
      zoom.push(await measureFps(page, async () => {
        for (let k = 0; k < 60; k++) await page.mouse.wheel(0, k < 30 ? -120 : 120);
      }));
      await page.evaluate(() => window.microlog.timeline.setView({ start: 1000, end: 1300 }));
      await page.waitForTimeout(300);
      pan.push(await measureFps(page, async () => {
        await page.mouse.move(cx, cy);
        await page.mouse.down();
        for (let k = 0; k < 60; k++) await page.mouse.move(cx + (k % 20 < 10 ? 1 : -1) * 15 * (k % 10), cy);
        await page.mouse.up();
      }));
    }
    await page.screenshot({ path: artifact("bench-ui-panned.png") });
    const result = {
      recording: { run: gen.run, seconds: meta.duration, samples: meta.samples, threads: meta.threads.length },
      first_paint_url_s: stats(cold), first_paint_click_s: stats(click),
      timeline_api_whole_run_ms: stats(apiMs),
      zoom_fps: stats(zoom.map((z) => z.fps)), pan_fps: stats(pan.map((p) => p.fps)),
      zoom_p95_frame_ms: stats(zoom.map((z) => z.p95_frame_ms)), pan_p95_frame_ms: stats(pan.map((p) => p.p95_frame_ms)),
      zoom_draws: zoom.map((z) => z.draws), pan_draws: pan.map((p) => p.draws),
    };
    const row = (name, target, s, unit, digits) =>
      console.log(`${name.padEnd(34)} ${target.padEnd(9)} ${s.median.toFixed(digits).padStart(8)} ${unit.padEnd(4)}` +
        ` (${s.min.toFixed(digits)} – ${s.max.toFixed(digits)})`);
    console.log(`\n${"metric".padEnd(34)} ${"target".padEnd(9)} ${"median".padStart(8)}      (min – max), ${REPS} runs`);
    row("first paint, open URL (cold)", "≤ 2 s", result.first_paint_url_s, "s", 3);
    row("first paint, click in tree", "≤ 2 s", result.first_paint_click_s, "s", 3);
    row("GET timeline whole run (API)", "", result.timeline_api_whole_run_ms, "ms", 0);
    row("zoom (wheel events)", "≥ 30 fps", result.zoom_fps, "fps", 1);
    row("pan (drag events)", "≥ 30 fps", result.pan_fps, "fps", 1);
    row("zoom p95 frame interval", "", result.zoom_p95_frame_ms, "ms", 1);
    row("pan p95 frame interval", "", result.pan_p95_frame_ms, "ms", 1);
    console.log(`redraws during zoom: ${result.zoom_draws.join(", ")}; during pan: ${result.pan_draws.join(", ")}`);
    const out = process.env.ML_BENCH_OUT;
    if (out) {
      mkdirSync(out, { recursive: true });
      writeFileSync(join(out, "ui.json"), JSON.stringify(result, null, 2));
    }
  } finally {
    await browser.close();
    await collector.stop();
  }
}

await main();
