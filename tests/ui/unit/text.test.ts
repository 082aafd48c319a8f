// Markdown rendering of log messages, the search box and the URL routes.
import { test } from "node:test";
import assert from "node:assert/strict";
import { escapeHtml, renderMarkdown } from "../../../frontend/src/markdown";
import { compileSearch, matches, matchingFrames } from "../../../frontend/src/search";
import { formatHash, parseHash } from "../../../frontend/src/route";
import { groupByLabel, moreNote, RUN_LIST_LIMIT, runListLimit } from "../../../frontend/src/tree";
import { edgeWidth, layoutDesign } from "../../../frontend/src/design";
import type { RunSummary } from "../../../frontend/src/api";

test("markdown escapes every HTML character before formatting", () => {
  assert.equal(escapeHtml(`<a href="x">'&'</a>`), "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
  const html = renderMarkdown(`<script>alert(1)</script> <img src=x onerror=alert(1)>`);
  assert.ok(!html.includes("<script") && !html.includes("<img"), html);
  assert.ok(html.includes("&lt;script&gt;"));
});

test("markdown renders the small subset", () => {
  assert.equal(renderMarkdown("**bold** and *em* and `x<y`"),
    "<p><strong>bold</strong> and <em>em</em> and <code>x&lt;y</code></p>");
  assert.equal(renderMarkdown("# Title\n- a\n- b\ntext"), "<h3>Title</h3><ul><li>a</li><li>b</li></ul><p>text</p>");
  assert.equal(renderMarkdown("```\n<b>\n**no**\n```"), "<pre><code>&lt;b&gt;\n**no**</code></pre>");
  assert.equal(renderMarkdown("[doc](https://example.com/a?b=1&c=2)"),
    '<p><a href="https://example.com/a?b=1&amp;c=2" target="_blank" rel="noopener noreferrer">doc</a></p>');
});

test("markdown links only allow http(s)", () => {
  const html = renderMarkdown("[x](javascript:alert(1))");
  assert.ok(!html.includes("href"), html);
  const quote = renderMarkdown('[x](https://a.com/"onmouseover=alert(1))');
  assert.ok(!/href="[^"]*"on/.test(quote), quote);
});

test("search compiles case-insensitive regexes and reports invalid ones", () => {
  const s = compileSearch("Fib.*");
  assert.ok(s.regex && !s.error);
  assert.ok(matches(s, "app.fibonacci"));
  assert.ok(!matches(s, "app.main", undefined));
  const bad = compileSearch("(unclosed");
  assert.equal(bad.regex, undefined);
  assert.match(bad.error ?? "", /Invalid|Unterminated|unterminated/);
  assert.equal(compileSearch("   ").regex, undefined);
  assert.ok(!matches(compileSearch(""), "anything"), "an empty box matches nothing");
  const frames = { "1": { name: "a.fib", file: "/a.py" }, "2": { name: "b.main", file: "/b.py", module: "b" } };
  assert.deepEqual([...matchingFrames(compileSearch("fib"), frames)], ["1"]);
  assert.deepEqual([...matchingFrames(compileSearch("b\\.py$"), frames)], ["2"]);
});

test("the hash opens a run, as the client prints it, and selects a tab", () => {
  assert.deepEqual(parseHash("#microlog-hello/2026_11_26_05_30_00"),
    { run: "microlog-hello/2026_11_26_05_30_00", tab: "timeline" });
  assert.deepEqual(parseHash("#microlog-hello/2026_11_26_05_30_00/"),
    { run: "microlog-hello/2026_11_26_05_30_00", tab: "timeline" }, "trailing slash of the original");
  assert.deepEqual(parseHash("#my%20label/2026_01_01_00_00_00-2?tab=log"),
    { run: "my label/2026_01_01_00_00_00-2", tab: "log" });
  assert.deepEqual(parseHash("#a/b?tab=bogus"), { run: "a/b", tab: "timeline" });
  assert.deepEqual(parseHash(""), { run: "", tab: "timeline" });
  assert.equal(formatHash({ run: "my label/t", tab: "design" }), "#my%20label/t?tab=design");
  for (const r of [{ run: "x-y/2026_01_01_00_00_00", tab: "timeline" as const },
    { run: "a b/c", tab: "flamegraph" as const }]) {
    assert.deepEqual(parseHash(formatHash(r)), r);
  }
});

test("the tree groups runs by label, newest first", () => {
  const run = (label: string, started: number): RunSummary => ({ id: `${label}/${started}`, label,
    timestamp: String(started), started, duration: 1, samples: 1, logs: 0, status: "complete", host: "h", user: "u" });
  const groups = groupByLabel([run("a", 1), run("b", 5), run("a", 3)]);
  assert.deepEqual([...groups.keys()], ["b", "a"]);
  assert.deepEqual(groups.get("a")!.map((r) => r.started), [3, 1]);
});

test("the tree lists RUN_LIST_LIMIT runs unless ?runs=N (1..100000) says otherwise", () => {
  assert.equal(runListLimit(""), RUN_LIST_LIMIT);
  assert.equal(runListLimit("?runs=25"), 25);
  assert.equal(runListLimit("?x=1&runs=100000"), 100000);
  for (const bad of ["?runs=0", "?runs=-3", "?runs=2.5", "?runs=abc", "?runs=", "?runs=100001"]) {
    assert.equal(runListLimit(bad), RUN_LIST_LIMIT, bad);
  }
  assert.equal(moreNote(1000, false), "Only the newest 1000 runs are listed; type a filter to find older ones.");
  assert.equal(moreNote(1, true), "Only the newest matching run is listed; narrow the filter to find older ones.");
});

test("design layout keeps nodes inside the box and apart; edge width grows with time", () => {
  const nodes = ["m1", "m2", "m3", "m2.C"].map((id) => ({ id, name: id, kind: "module" as const,
    module: id.split(".")[0], time: 1, self: 1 }));
  const edges = [{ source: "m1", target: "m2", time: 3, calls: 1 }, { source: "m2", target: "m2.C", time: 1, calls: 2 }];
  const pos = layoutDesign(nodes, edges, 800, 600);
  assert.equal(pos.size, 4);
  const pts = [...pos.values()];
  for (const p of pts) assert.ok(p.x >= 0 && p.x <= 800 && p.y >= 0 && p.y <= 600);
  for (let i = 0; i < pts.length; i++) for (let j = i + 1; j < pts.length; j++) {
    assert.ok(Math.hypot(pts[i].x - pts[j].x, pts[i].y - pts[j].y) > 30, "nodes do not overlap");
  }
  assert.deepEqual(layoutDesign(nodes, edges, 800, 600), pos, "deterministic");
  assert.equal(edgeWidth(0, 0), 1);
  assert.ok(edgeWidth(3, 3) > edgeWidth(1, 3) && edgeWidth(1, 3) > edgeWidth(0, 3));
  assert.equal(edgeWidth(3, 3), 14);
});
