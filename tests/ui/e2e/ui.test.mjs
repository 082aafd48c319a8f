// The web UI in headless Chromium against a real micrologd serving real runs
// recorded by the real client. Each view is exercised the way a user does it
// and saved as a screenshot in tests/artifacts/ui-*.png. Tests of a view whose
// endpoint this collector does not serve yet (404) are skipped with that reason.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import {
  artifact, get, launchBrowser, PYTHON, pythonEnv, record, ROOT, runPath, startCollector, waitComplete,
} from "./harness.mjs";

const WORKLOAD = join(ROOT, "tests", "ui", "e2e", "workload.py");

let collector;
let browser;
let page;
let run; // the main recorded run
let other; // a second run under another label
const served = {}; // endpoint -> true when this collector serves it

async function serves(endpoint) {
  if (!(endpoint in served)) {
    const r = await get(collector.http, runPath(run.id, endpoint));
    served[endpoint] = r.status !== 404 || !/unknown endpoint/.test(JSON.stringify(r.body));
  }
  return served[endpoint];
}

function skipUnless(t, ok, endpoint) {
  if (!ok) t.skip(`the collector does not serve ${endpoint} yet (404)`);
  return !ok;
}

const hashOf = (id) => "#" + id.split("/").map(encodeURIComponent).join("/");

async function openRun(id, tab) {
  await page.goto("about:blank"); // a fresh page: no zoom or search left from an earlier test
  await page.goto(`${collector.http}/${hashOf(id)}${tab ? `?tab=${tab}` : ""}`);
  await page.waitForSelector(".run-head h2");
  await page.waitForFunction((runId) => document.querySelector(".run-head h2")?.textContent === runId, id);
}

async function clickTab(name) {
  await page.click(`.tabs button[data-tab="${name}"]`);
  await page.waitForFunction((n) => document.querySelector(`.tabs button[data-tab="${n}"]`)
    ?.classList.contains("active"), name);
}

async function timelineReady() {
  await page.waitForFunction(() => Number(document.querySelector(".timeline canvas")?.dataset.calls) > 0,
    null, { timeout: 15000 });
}

describe("web UI in Chromium", () => {
  before(async () => {
    collector = await startCollector();
    run = record(collector.http, "ui-test-main", WORKLOAD);
    other = record(collector.http, "ui-test-other", WORKLOAD);
    await waitComplete(collector.http, run.id);
    await waitComplete(collector.http, other.id);
    browser = await launchBrowser();
    page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
    page.on("pageerror", (err) => console.error("page error:", err));
  });

  after(async () => {
    await browser?.close();
    const code = await collector?.stop();
    assert.equal(code, 0, collector?.log());
  });

  test("opening /#label/timestamp shows that run, selected in the tree grouped by label", async () => {
    await openRun(run.id);
    await page.screenshot({ path: artifact("ui-open.png") });
    const selected = await page.$eval("nav a.selected", (a) => a.dataset.run);
    assert.equal(selected, run.id);
    const groups = await page.$$eval("nav summary", (s) => s.map((x) => x.textContent));
    assert.ok(groups.some((g) => g.startsWith("ui-test-main")) && groups.some((g) => g.startsWith("ui-test-other")),
      groups.join(", "));
    assert.equal(groups[0].split(" ")[0], "ui-test-other", "the newest label first");
    const exports = await page.$$eval(".exports a", (as) => as.map((a) => a.dataset.format));
    assert.deepEqual(exports, ["speedscope", "pprof", "collapsed", "chrome"]);
  });

  test("the filter box filters the tree by regular expression", async () => {
    await openRun(run.id);
    await page.fill("#filter", "test-other");
    await page.waitForFunction(() => document.querySelectorAll("nav summary").length === 1);
    const groups = await page.$$eval("nav summary", (s) => s.map((x) => x.textContent));
    assert.match(groups[0], /^ui-test-other/);
    await page.fill("#filter", "(");
    await page.waitForSelector("#filter.invalid");
    await page.fill("#filter", "");
    await page.waitForFunction(() => document.querySelectorAll("nav summary").length >= 2);
  });

  test("the tree lists the newest ?runs=N runs and says when there are more", async () => {
    await page.goto("about:blank");
    await page.goto(`${collector.http}/?runs=1${hashOf(run.id)}`);
    await page.waitForSelector("nav p.more");
    const listed = await page.$$eval("nav a[data-run]", (as) => as.map((a) => a.dataset.run));
    assert.equal(listed.length, 1, listed.join(", "));
    assert.match(await page.textContent("nav p.more"), /^Only the newest run is listed; type a filter/);
    await page.fill("#filter", "ui-test-main");
    await page.waitForFunction((id) => document.querySelector("nav a[data-run]")?.dataset.run === id, run.id);
    await page.waitForFunction(() => !document.querySelector("nav p.more")); // the only match: no more
    await page.goto("about:blank");
    await page.goto(`${collector.http}/${hashOf(run.id)}`);
    await page.waitForFunction(() => document.querySelectorAll("nav a[data-run]").length >= 2);
    assert.equal(await page.$("nav p.more"), null, "no note when every run is listed");
  });

  test("the back button returns to the previous run", async () => {
    await openRun(run.id);
    await page.click(`nav a[data-run="${other.id}"]`);
    await page.waitForFunction((id) => document.querySelector(".run-head h2")?.textContent === id, other.id);
    await page.goBack();
    await page.waitForFunction((id) => document.querySelector(".run-head h2")?.textContent === id, run.id);
    assert.equal(await page.$eval("nav a.selected", (a) => a.dataset.run), run.id);
  });

  test("the timeline draws calls per thread; a thread checkbox hides its lane", async (t) => {
    if (skipUnless(t, await serves("timeline"), "timeline")) return;
    await openRun(run.id);
    await timelineReady();
    await page.screenshot({ path: artifact("ui-timeline.png") });
    const boxes = await page.$$(".threads input[type=checkbox]");
    assert.ok(boxes.length >= 2, `one checkbox per thread, got ${boxes.length}`);
    const height = () => page.$eval(".timeline canvas", (c) => c.clientHeight);
    const before = await height();
    await boxes[1].uncheck();
    await page.waitForFunction((h) => document.querySelector(".timeline canvas").clientHeight < h, before);
    assert.deepEqual(await page.evaluate(() => window.microlog.timeline.selectedThreads().length), boxes.length - 1);
    await boxes[1].check();
    await page.waitForFunction((h) => document.querySelector(".timeline canvas").clientHeight === h, before);
  });

  test("wheel zooms around the mouse and fetches more detail; drag pans", async (t) => {
    if (skipUnless(t, await serves("timeline"), "timeline")) return;
    await openRun(run.id);
    await timelineReady();
    const view0 = await page.evaluate(() => window.microlog.timeline.getView());
    const box = await (await page.$(".timeline canvas")).boundingBox();
    const detail = page.waitForRequest((r) => /\/timeline\?start=/.test(r.url()));
    await page.mouse.move(box.x + box.width / 2, box.y + 200);
    for (let i = 0; i < 5; i++) await page.mouse.wheel(0, -200);
    const req = await detail;
    const view1 = await page.evaluate(() => window.microlog.timeline.getView());
    assert.ok(view1.end - view1.start < (view0.end - view0.start) / 2, JSON.stringify([view0, view1]));
    assert.match(req.url(), /width=\d+/);
    await page.mouse.down();
    await page.mouse.move(box.x + box.width / 2 + 200, box.y + 200, { steps: 5 });
    await page.mouse.up();
    const view2 = await page.evaluate(() => window.microlog.timeline.getView());
    assert.ok(view2.start < view1.start, "dragging right shows earlier times");
    await page.waitForTimeout(400);
    await page.screenshot({ path: artifact("ui-timeline-zoomed.png") });
  });

  test("search highlights matching calls in the timeline, flame graph and log", async (t) => {
    await openRun(run.id);
    await page.fill("#search", "fibonacci");
    await page.waitForFunction(() => Number(document.querySelector(".log")?.dataset.matches) > 0);
    if (await serves("timeline")) {
      await timelineReady();
      await page.waitForFunction(() => Number(document.querySelector(".timeline canvas")?.dataset.matches) > 0);
      await page.screenshot({ path: artifact("ui-search-timeline.png") });
    }
    await clickTab("flamegraph");
    await page.waitForFunction(() => Number(document.querySelector(".flamegraph canvas")?.dataset.matches) > 0);
    await page.screenshot({ path: artifact("ui-search-flamegraph.png") });
    await page.fill("#search", "(bad");
    await page.waitForSelector("#search.invalid");
    await page.fill("#search", "");
    await page.waitForFunction(() => document.querySelector(".log")?.dataset.matches === "");
    if (!(await serves("timeline"))) t.diagnostic("timeline highlight not checked: timeline endpoint 404");
  });

  test("the flame graph draws the aggregated tree and zooms into a node", async () => {
    await openRun(run.id, "flamegraph");
    await page.waitForFunction(() => Number(document.querySelector(".flamegraph canvas")?.dataset.nodes) > 3);
    const api = await get(collector.http, runPath(run.id, "flamegraph"));
    assert.equal(api.status, 200);
    const info = await page.textContent(".flamegraph .muted");
    assert.match(info, /sampled/);
    await page.screenshot({ path: artifact("ui-flamegraph.png") });
    const canvas = await page.$(".flamegraph canvas");
    const box = await canvas.boundingBox();
    const n0 = Number(await canvas.getAttribute("data-nodes"));
    await page.mouse.click(box.x + 5, box.y + 18 * 3 + 5); // a node three levels down, at the left edge
    await page.waitForFunction((n) => Number(document.querySelector(".flamegraph canvas").dataset.nodes) !== n, n0);
  });

  test("clicking a call opens the popup with the similar calls and the anomaly", async (t) => {
    if (skipUnless(t, (await serves("timeline")) && (await serves("calls?name=x")), "timeline and calls")) return;
    await openRun(run.id);
    await timelineReady();
    const pos = await page.evaluate(() => {
      const tl = window.microlog.timeline;
      const frames = tl.frames();
      const hit = tl.rects.find((r) => frames[r.rect.call.frame]?.name.endsWith("slow_step") && r.rect.w > 3);
      return hit && { x: hit.rect.x + hit.rect.w / 2, y: hit.rect.y + hit.rect.h / 2 };
    });
    assert.ok(pos, "a slow_step call is drawn");
    const box = await (await page.$(".timeline canvas")).boundingBox();
    await page.mouse.click(box.x + pos.x, box.y + pos.y);
    await page.waitForSelector(".popup table.calls tbody tr");
    const title = await page.textContent(".popup strong");
    assert.match(title, /slow_step/);
    const rows = await page.$$(".popup table.calls tbody tr");
    // 12 calls; under a loaded machine a sample may fall between two of them and merge them.
    assert.ok(rows.length >= 5, `similar calls listed: ${rows.length}`);
    assert.ok((await page.$$(".popup tr.anomaly")).length >= 1, "the 300 ms call is an anomaly");
    const link = await page.getAttribute(".popup a.source", "href");
    assert.match(link, /^vscode:\/\/file\/.*workload\.py:\d+$/);
    await page.screenshot({ path: artifact("ui-popup.png") });
    await page.keyboard.press("Escape");
  });

  test("the Log tab renders every entry as markdown with stack source links", async () => {
    await openRun(run.id, "log");
    const api = await get(collector.http, runPath(run.id, "log"));
    await page.waitForSelector(".log-entry");
    const count = await page.$$eval(".log-entry", (e) => e.length);
    assert.equal(count, api.body.events.length);
    const html = await page.$$eval(".log-entry .message", (m) => m.map((x) => x.innerHTML).join("\n"));
    assert.match(html, /<strong>Starting<\/strong> the <code>workload<\/code> &lt;b&gt;not bold&lt;\/b&gt;/);
    assert.ok(!/<b>not bold<\/b>/.test(html), "HTML in a message is escaped");
    const links = await page.$$eval(".log-entry .stack a", (as) => as.map((a) => a.getAttribute("href")));
    assert.ok(links.some((h) => /^vscode:\/\/file\/.*workload\.py:\d+$/.test(h)), links.slice(0, 5).join(" "));
    await page.screenshot({ path: artifact("ui-log.png"), fullPage: false });
    // Clicking an entry shows it on the timeline.
    await page.click(".log-entry.kind-stdout .message");
    await page.waitForFunction(() => document.querySelector(".tabs button.active")?.dataset.tab === "timeline");
    assert.doesNotMatch(await page.evaluate(() => location.hash), /tab=log/);
  });

  test("the Design tab draws the call graph with draggable nodes", async (t) => {
    if (skipUnless(t, await serves("design"), "design")) return;
    await openRun(run.id, "design");
    await page.waitForSelector(".design g.node");
    const nodes = await page.$$(".design g.node");
    assert.ok(nodes.length >= 1);
    assert.ok((await page.$$(".design line")).length >= 1, "edges drawn");
    await page.screenshot({ path: artifact("ui-design.png") });
    const before = await nodes[0].getAttribute("transform");
    const box = await nodes[0].boundingBox();
    await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
    await page.mouse.down();
    await page.mouse.move(box.x + 80, box.y + 60, { steps: 4 });
    await page.mouse.up();
    assert.notEqual(await nodes[0].getAttribute("transform"), before, "the node moved");
  });

  for (const format of ["speedscope", "collapsed", "chrome", "pprof"]) {
    test(`the ${format} export downloads a valid file`, async (t) => {
      if (skipUnless(t, await serves(`export?format=${format}`), "export")) return;
      await openRun(run.id);
      const download = page.waitForEvent("download");
      await page.click(`.exports a[data-format="${format}"]`);
      const file = await (await download).path();
      const bytes = readFileSync(file);
      if (format === "speedscope") {
        const doc = JSON.parse(bytes.toString("utf8"));
        assert.match(doc.$schema, /speedscope/);
        assert.ok(doc.profiles.length >= 1 && doc.shared.frames.length >= 1);
      } else if (format === "collapsed") {
        const lines = bytes.toString("utf8").trim().split("\n");
        assert.ok(lines.length >= 1 && lines.every((l) => /^\S.* \d+$/.test(l)), lines.slice(0, 3).join("\n"));
        assert.ok(lines.some((l) => l.includes("fibonacci")));
      } else if (format === "chrome") {
        const doc = JSON.parse(bytes.toString("utf8"));
        const events = Array.isArray(doc) ? doc : doc.traceEvents;
        assert.ok(events.some((e) => e.ph === "X" && e.dur >= 0 && /fibonacci/.test(e.name)));
      } else {
        assert.equal(bytes[0], 0x1f, "gzip magic");
        assert.ok(gunzipSync(bytes).length > 0);
      }
    });
  }

  test("a run that is still recording updates live", async (t) => {
    if (skipUnless(t, await serves("live"), "live")) return;
    const proc = spawn(PYTHON, ["-m", "microlog", "ui-test-live", join(ROOT, "tests/ui/e2e/live_workload.py")], {
      env: pythonEnv({ MICROLOG_SERVER: collector.http, TRACER_SAMPLE_DELAY: "0.005" }), stdio: "ignore",
    });
    const exited = new Promise((r) => proc.once("exit", r));
    try {
      let id;
      for (let i = 0; i < 100 && !id; i++) {
        const runs = (await get(collector.http, "/api/v1/runs?filter=ui-test-live")).body;
        id = runs.find?.((r) => r.status === "live")?.id;
        if (!id) await new Promise((r) => setTimeout(r, 50));
      }
      assert.ok(id, "the run is listed while it records");
      await openRun(id, "log");
      await page.waitForSelector(".run-head .meta");
      assert.match(await page.textContent(".run-head .meta"), /recording/);
      const first = await page.$$eval(".log-entry.kind-stdout", (e) => e.length);
      await page.waitForFunction((n) => document.querySelectorAll(".log-entry.kind-stdout").length > n,
        first, { timeout: 10000 });
      await page.screenshot({ path: artifact("ui-live.png") });
      await exited;
      // The end event reloads the run as complete.
      await page.waitForFunction(() => !/recording/.test(document.querySelector(".run-head .meta")?.textContent ?? "x"),
        null, { timeout: 15000 });
      // Every print is listed exactly once (the reload after the end replaces the live list).
      await page.waitForFunction(() => document.querySelectorAll(".log-entry.kind-stdout").length === 16,
        null, { timeout: 10000 }).catch(() => undefined);
      const prints = await page.$$eval(".log-entry.kind-stdout .message", (e) => e.map((x) => x.textContent));
      assert.deepEqual(prints, Array.from({ length: 16 }, (_, i) => `live tick ${i}`));
    } finally {
      proc.kill();
    }
  });

  test("deleting a run from the tree removes it", async () => {
    const victim = record(collector.http, "ui-test-delete", WORKLOAD);
    await waitComplete(collector.http, victim.id);
    await openRun(victim.id);
    page.once("dialog", (d) => d.accept());
    await page.hover(`nav a[data-run="${victim.id}"]`);
    await page.click(`nav .run:has(a[data-run="${victim.id}"]) button.delete`);
    await page.waitForFunction((id) => !document.querySelector(`nav a[data-run="${id}"]`), victim.id);
    assert.equal((await get(collector.http, runPath(victim.id))).status, 404);
    await page.waitForSelector("section#run .hint");
  });
});
