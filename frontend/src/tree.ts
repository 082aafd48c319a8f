// The log tree view at the left: runs grouped by label (newest group and
// newest run first), a regular-expression filter box, and a delete button per
// run. Reads GET /api/v1/runs?filter=&limit= and DELETE /api/v1/runs/{run}.
// A shared collector may hold 100 000 runs: the tree lists the newest
// `limit` of those that match (RUN_LIST_LIMIT unless the page's ?runs=N says
// otherwise) and says so when there are more.

import { deleteRun, listRuns, RunSummary } from "./api";
import { el } from "./dom";
import { formatDuration } from "./scale";

/** Runs grouped by label; groups ordered by their newest run, runs newest first. */
export function groupByLabel(runs: RunSummary[]): Map<string, RunSummary[]> {
  const groups = new Map<string, RunSummary[]>();
  for (const run of [...runs].sort((a, b) => b.started - a.started)) {
    const list = groups.get(run.label) ?? [];
    list.push(run);
    groups.set(run.label, list);
  }
  return groups;
}

export const RUN_LIST_LIMIT = 1000;

/** The number of runs the tree lists: ?runs=N in the page's query string
 * (1..100000), else RUN_LIST_LIMIT. */
export function runListLimit(search: string): number {
  const n = Number(new URLSearchParams(search).get("runs") ?? "");
  return Number.isInteger(n) && n >= 1 && n <= 100000 ? n : RUN_LIST_LIMIT;
}

/** What the tree says under its last run when older runs were left out. */
export function moreNote(limit: number, filtered: boolean): string {
  const what = limit === 1 ? `newest${filtered ? " matching" : ""} run is` :
    `newest ${limit}${filtered ? " matching" : ""} runs are`;
  return `Only the ${what} listed; ${filtered ? "narrow the" : "type a"} filter to find older ones.`;
}

export class RunTree {
  private selected = "";
  private timer = 0;
  private collapsed = new Set<string>();

  constructor(private readonly root: HTMLElement, private readonly filter: HTMLInputElement,
    private readonly onDeleted: (id: string) => void, private readonly limit = RUN_LIST_LIMIT) {
    filter.addEventListener("input", () => {
      clearTimeout(this.timer);
      this.timer = window.setTimeout(() => void this.refresh(), 200);
    });
  }

  select(id: string): void {
    this.selected = id;
    this.root.querySelectorAll<HTMLElement>("a[data-run]").forEach((a) =>
      a.classList.toggle("selected", a.dataset.run === id));
  }

  async refresh(): Promise<void> {
    let runs: RunSummary[];
    try {
      runs = await listRuns(this.filter.value, this.limit + 1); // one more: are there more?
      this.filter.classList.remove("invalid");
    } catch (error) {
      this.filter.classList.add("invalid");
      this.root.replaceChildren(el("p", String((error as Error).message), "error"));
      return;
    }
    const more = runs.length > this.limit;
    if (more) runs = runs.slice(0, this.limit); // newest first
    const nodes: HTMLElement[] = [];
    for (const [label, group] of groupByLabel(runs)) {
      const details = el("details");
      details.open = !this.collapsed.has(label);
      details.addEventListener("toggle", () => {
        if (details.open) this.collapsed.delete(label);
        else this.collapsed.add(label);
      });
      details.append(el("summary", `${label} (${group.length})`));
      for (const run of group) details.append(this.item(run));
      nodes.push(details);
    }
    if (nodes.length === 0) nodes.push(el("p", "No runs.", "hint"));
    if (more) nodes.push(el("p", moreNote(this.limit, this.filter.value !== ""), "hint more"));
    this.root.replaceChildren(...nodes);
  }

  private item(run: RunSummary): HTMLElement {
    const row = el("div", undefined, "run");
    const link = el("a", run.timestamp.replace(/_/g, (_, i: number) => (i === 10 ? " " : i > 10 ? ":" : "-")));
    link.href = `#${run.id.split("/").map(encodeURIComponent).join("/")}`;
    link.dataset.run = run.id;
    link.title = `${run.id}\n${run.samples} samples, ${formatDuration(run.duration)}, ${run.status}` +
      `\n${run.user}@${run.host}`;
    if (run.id === this.selected) link.classList.add("selected");
    if (run.status === "live") link.append(el("span", " ● live", "live"));
    const del = el("button", "✕", "delete");
    del.title = `Delete ${run.id}`;
    del.setAttribute("aria-label", `Delete ${run.id}`);
    del.addEventListener("click", async () => {
      if (!window.confirm(`Delete the run ${run.id}?`)) return;
      try {
        await deleteRun(run.id);
      } catch (error) {
        window.alert(String((error as Error).message));
        return;
      }
      this.onDeleted(run.id);
      await this.refresh();
    });
    row.append(link, del);
    return row;
  }
}
