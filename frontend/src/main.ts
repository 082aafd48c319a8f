// Entry point: the run tree at the left, the selected run at the right with
// its tabs (Timeline, Flame graph, Log, Design), the search box top right and
// the export buttons. The URL hash is the run identity (#label/timestamp), as
// the client prints it; every run and tab change is a history entry.

import {
  ApiError, EXPORT_FORMATS, exportUrl, getRun, liveUrl, LogEvent, RunDetail, runLog, runSearch,
} from "./api";
import { CallPopup } from "./popup";
import { DesignView } from "./design";
import { el } from "./dom";
import { FlamegraphView } from "./flamegraph";
import { LogView } from "./log";
import { formatHash, parseHash, Route, Tab, TABS } from "./route";
import { formatDuration } from "./scale";
import { compileSearch, Search } from "./search";
import { TimelineView } from "./timeline";
import { RunTree, runListLimit } from "./tree";

const runsEl = document.getElementById("runs") as HTMLElement;
const runEl = document.getElementById("run") as HTMLElement;
const filterEl = document.getElementById("filter") as HTMLInputElement;
const searchEl = document.getElementById("search") as HTMLInputElement;
const searchInfo = document.getElementById("search-info") as HTMLElement;

const TAB_NAMES: Record<Tab, string> = {
  timeline: "Timeline", flamegraph: "Flame graph", log: "Log", design: "Design",
};

let route: Route = parseHash(location.hash);
let current: RunDetail | undefined;
let events: LogEvent[] = [];
let search: Search = { text: "" };
let live: EventSource | undefined;
let opening = "";

const popup = new CallPopup((start, duration) => {
  popup.hide();
  go({ ...route, tab: "timeline" });
  timeline.showRange(start, duration);
});
document.body.append(popup.element);

const timeline = new TimelineView(
  (pick) => {
    const name = pick.frame?.name ?? pick.call.frame;
    void popup.show(route.run, { name, start: pick.call.start, duration: pick.call.duration,
      count: pick.call.count, frame: pick.frame }, pick.x, pick.y, timeline.getView().end);
  },
  (index) => {
    go({ ...route, tab: "log" });
    logView.reveal(index);
  },
  () => {
    if (route.tab === "flamegraph") loadFlame();
  });
const flame = new FlamegraphView((node, x, y) => {
  void popup.show(route.run, { name: node.name, start: 0, duration: node.value, file: node.file,
    line: node.first_line ?? node.line }, x, y, current?.duration ?? 0);
});
const logView = new LogView((ev) => {
  go({ ...route, tab: "timeline" });
  timeline.showTime(ev.time);
});
const design = new DesignView();
const tree = new RunTree(runsEl, filterEl, (id) => {
  if (id === route.run) go({ run: "", tab: "timeline" });
}, runListLimit(location.search));

const title = el("h2");
const meta = el("div", undefined, "muted meta");
const exportsBar = el("div", undefined, "exports");
const tabsBar = el("div", undefined, "tabs");
const panels: Record<Tab, HTMLElement> = {
  timeline: timeline.element, flamegraph: flame.element, log: logView.element, design: design.element,
};
const tabButtons = new Map<Tab, HTMLButtonElement>();
for (const tab of TABS) {
  const b = el("button", TAB_NAMES[tab]);
  b.dataset.tab = tab;
  b.addEventListener("click", () => go({ ...route, tab }));
  tabButtons.set(tab, b);
  tabsBar.append(b);
}
const runHead = el("div", undefined, "run-head");
const titleBox = el("div");
titleBox.append(title, meta);
runHead.append(titleBox, exportsBar);
const panelBox = el("div", undefined, "panels");
panelBox.append(...TABS.map((t) => panels[t]));

function go(next: Route): void {
  const hash = formatHash(next);
  if (hash !== location.hash && !(hash === "" && location.hash === "")) {
    history.pushState(null, "", hash || location.pathname);
  }
  void apply(next);
}

function loadFlame(): void {
  if (!current) return;
  const view = timeline.getView();
  const whole = view.end - view.start >= current.duration * 0.999;
  void flame.load(current.id, view, timeline.selectedThreads(), whole);
}

function showTab(tab: Tab): void {
  for (const t of TABS) {
    panels[t].hidden = t !== tab;
    tabButtons.get(t)!.classList.toggle("active", t === tab);
  }
  if (!current) return;
  if (tab === "flamegraph") loadFlame();
  if (tab === "design") void design.load(current.id);
  if (tab === "timeline") timeline.requestDraw();
}

async function apply(next: Route): Promise<void> {
  const sameRun = next.run === route.run && (current !== undefined || opening === next.run);
  route = next;
  tree.select(route.run);
  if (sameRun) {
    showTab(route.tab);
    return;
  }
  await openRun(route.run);
}

async function openRun(id: string): Promise<void> {
  live?.close();
  live = undefined;
  current = undefined;
  popup.hide();
  opening = id;
  if (!id) {
    runEl.replaceChildren(el("p", "Select a run at the left.", "hint"));
    return;
  }
  runEl.replaceChildren(el("h2", id), el("p", "Loading…", "muted"));
  let detail: RunDetail;
  try {
    detail = await getRun(id);
  } catch (error) {
    runEl.replaceChildren(el("h2", id), el("p", (error as Error).message, "error"));
    return;
  }
  if (route.run !== id) return;
  current = detail;
  title.textContent = detail.id;
  renderMeta();
  exportsBar.replaceChildren(el("span", "Export:", "muted"), ...EXPORT_FORMATS.map((f) => {
    const a = el("a", f, "button");
    a.href = exportUrl(detail.id, f);
    a.download = "";
    a.dataset.format = f;
    return a;
  }));
  runEl.replaceChildren(runHead, tabsBar, panelBox);
  timeline.element.querySelector(":scope > p.error")?.remove();
  // open() selects every thread before its first await, so the tab shown next sees them.
  const timelineLoad = timeline.open(detail.id, detail.duration, detail.threads ?? []).catch((error) => {
    const msg = error instanceof ApiError && error.status === 404
      ? "This collector does not serve the timeline." : (error as Error).message;
    timeline.element.prepend(el("p", `Timeline: ${msg}`, "error"));
  });
  showTab(route.tab);
  runLog(detail.id).then((log) => {
    if (current?.id !== detail.id) return;
    events = log.events;
    logView.setEvents(events);
    timeline.setLog(events);
  }).catch((error) => logView.element.replaceChildren(el("p", `Log: ${(error as Error).message}`, "error")));
  applySearch();
  await timelineLoad;
  if (detail.status === "live") startLive(detail.id);
}

function renderMeta(): void {
  if (!current) return;
  const c = current;
  meta.textContent = `${c.status === "live" ? "● recording, " : ""}${formatDuration(c.duration)}, ` +
    `${c.samples.toLocaleString("en")} samples, ${c.logs} log entries, ` +
    `${(c.threads ?? []).length} threads, ${c.user}@${c.host}`;
}

/** Follows a run that is still recording through the live SSE stream. */
function startLive(id: string): void {
  if (typeof EventSource === "undefined") return;
  const source = new EventSource(liveUrl(id));
  live = source;
  const parse = (e: Event) => {
    try {
      return JSON.parse((e as MessageEvent).data);
    } catch {
      return undefined;
    }
  };
  source.addEventListener("status", (e) => {
    const tick = parse(e);
    if (tick && typeof tick.time === "number") timeline.extend(tick.time, undefined, tick);
  });
  source.addEventListener("log", (e) => {
    const ev = parse(e) as LogEvent | undefined;
    if (!ev) return;
    logView.append(ev); // logView shares the events array with the timeline's markers
    timeline.setLog(events);
  });
  source.addEventListener("calls", (e) => {
    const data = parse(e);
    if (!data?.threads) return;
    let end = 0;
    for (const t of data.threads) for (const c of t.calls ?? []) end = Math.max(end, c.start + c.duration);
    timeline.extend(end, data.threads);
  });
  source.addEventListener("run", (e) => {
    const summary = parse(e);
    if (!summary || !current || summary.id !== current.id) return;
    Object.assign(current, summary);
    renderMeta();
    timeline.extend(summary.duration);
  });
  source.addEventListener("end", () => {
    source.close();
    if (live === source) live = undefined;
    if (current?.id === id) {
      current.status = "complete";
      void openRun(id);
    }
    void tree.refresh();
  });
  source.onerror = () => {
    // A collector without the live endpoint answers 404: stop retrying.
    if (source.readyState === EventSource.CLOSED && live === source) live = undefined;
  };
}

let searchTimer = 0;
function applySearch(): void {
  search = compileSearch(searchEl.value);
  searchEl.classList.toggle("invalid", search.error !== undefined);
  searchEl.title = search.error ?? "Regular expression: highlights the timeline, flame graph, log and design";
  timeline.setSearch(search);
  flame.setSearch(search);
  logView.setSearch(search);
  design.setSearch(search);
  searchInfo.textContent = search.error ? "invalid regex" : "";
  if (search.regex && current) {
    const id = current.id;
    const text = searchEl.value.trim();
    runSearch(id, text).then((r) => {
      if (current?.id === id && searchEl.value.trim() === text) {
        searchInfo.textContent = `${r.calls} calls, ${r.log.length} log`;
      }
    }).catch(() => undefined);
  }
}
searchEl.addEventListener("input", () => {
  clearTimeout(searchTimer);
  searchTimer = window.setTimeout(applySearch, 150);
});

// Links, the back and forward buttons and typed URLs all change the hash.
window.addEventListener("hashchange", () => {
  const next = parseHash(location.hash);
  if (next.run !== route.run || next.tab !== route.tab) void apply(next);
});

// Exposed for the browser tests and benchmarks (read-only inspection).
(window as unknown as { microlog: unknown }).microlog = { timeline, flame, logView, design, popup };

void tree.refresh();
void openRun(route.run).then(() => tree.select(route.run));
