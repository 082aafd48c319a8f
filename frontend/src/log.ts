// The Log tab: every print, logging, marker and analysis entry in order,
// the message rendered as (escaped) markdown, each with its stack trace and
// source links. Clicking an entry shows it on the timeline. The search box
// highlights matching entries and can hide the others.

import { LogEvent } from "./api";
import { el, sourceAnchor } from "./dom";
import { renderMarkdown } from "./markdown";
import { formatDuration, sourceLink } from "./scale";
import { Search } from "./search";

const LEVELS: Record<number, string> = { 10: "DEBUG", 20: "INFO", 30: "WARNING", 40: "ERROR", 50: "CRITICAL" };

/** Messages with more lines than this start folded. */
const LONG = 12;

export function levelName(level: number): string {
  return LEVELS[level] ?? (level ? `L${level}` : "");
}

export class LogView {
  readonly element = el("div", undefined, "log");
  private readonly bar = el("div", undefined, "log-bar");
  private readonly list = el("div", undefined, "log-list");
  private readonly only = el("input");
  private events: LogEvent[] = [];
  private rows: HTMLElement[] = [];
  private search: Search = { text: "" };

  constructor(private readonly onShow: (event: LogEvent) => void) {
    this.only.type = "checkbox";
    this.only.addEventListener("change", () => this.applySearch());
    const label = el("label");
    label.append(this.only, " only entries matching the search");
    this.bar.append(label);
    this.element.append(this.bar, this.list);
  }

  setEvents(events: LogEvent[]): void {
    this.events = events;
    this.rows = events.map((ev, i) => this.row(ev, i));
    this.list.replaceChildren(...(this.rows.length ? this.rows : [el("p", "No log entries.", "hint")]));
    this.applySearch();
  }

  /** Adds a live event; one already listed (the initial fetch and the stream overlap) is ignored. */
  append(event: LogEvent): void {
    const dup = this.events.slice(-64).some((e) => e.time === event.time && e.thread === event.thread &&
      e.message === event.message);
    if (dup) return;
    this.events.push(event);
    const row = this.row(event, this.events.length - 1);
    this.rows.push(row);
    if (this.rows.length === 1) this.list.replaceChildren();
    this.list.append(row);
    this.applySearch();
  }

  setSearch(search: Search): void {
    this.search = search;
    this.applySearch();
  }

  /** Scrolls to entry index and flashes it. */
  reveal(index: number): void {
    const row = this.rows[index];
    if (!row) return;
    row.scrollIntoView({ block: "center" });
    row.classList.add("flash");
    setTimeout(() => row.classList.remove("flash"), 1500);
  }

  private applySearch(): void {
    const re = this.search.regex;
    let count = 0;
    this.events.forEach((ev, i) => {
      const hit = re !== undefined && (re.test(ev.message) || ev.stack.some((f) => re.test(f.name)));
      if (hit) count++;
      this.rows[i].classList.toggle("match", hit);
      this.rows[i].hidden = this.only.checked && re !== undefined && !hit;
    });
    this.element.dataset.matches = re ? String(count) : "";
  }

  private row(ev: LogEvent, index: number): HTMLElement {
    const row = el("div", undefined, `log-entry kind-${ev.kind}`);
    row.dataset.index = String(index);
    const head = el("div", undefined, "log-head");
    const time = el("a", formatDuration(ev.time), "time");
    time.href = "#";
    time.title = "Show on the timeline";
    time.addEventListener("click", (e) => {
      e.preventDefault();
      this.onShow(ev);
    });
    head.append(time, el("span", ev.kind, "kind"));
    const level = levelName(ev.level);
    if (level && ev.kind === "logging") head.append(el("span", level, `level level-${level.toLowerCase()}`));
    if (ev.logger) head.append(el("span", ev.logger, "muted"));
    head.append(el("span", `thread ${ev.thread}`, "muted"));
    const msg = el("div", undefined, "message");
    msg.innerHTML = renderMarkdown(ev.message); // escaped by renderMarkdown
    row.append(head, msg);
    if (ev.message.split("\n").length > LONG) {
      // Long entries (the run's analysis lists the environment) start folded.
      msg.classList.add("folded");
      const more = el("button", "show all", "more");
      more.addEventListener("click", (e) => {
        e.stopPropagation();
        more.textContent = msg.classList.toggle("folded") ? "show all" : "fold";
      });
      row.append(more);
    }
    if (ev.stack.length) {
      const details = el("details", undefined, "stack");
      const top = ev.stack[ev.stack.length - 1];
      details.append(el("summary", `${top.name} (${top.file.split("/").pop()}:${top.line})`));
      const ol = el("ol");
      for (const f of ev.stack) {
        const li = el("li");
        li.append(sourceAnchor(sourceLink(f.file, f.line), `${f.name}`, `${f.file}:${f.line}`),
          el("span", ` ${f.file}:${f.line}`, "muted"));
        ol.append(li);
      }
      details.append(ol);
      row.append(details);
    }
    row.addEventListener("click", (e) => {
      if ((e.target as HTMLElement).closest("a, summary")) return;
      this.onShow(ev);
    });
    return row;
  }
}
