// The log tree view at the left: runs grouped by label (newest group and
// newest run first), a regular-expression filter box, and a delete button per
// run. Reads GET /api/v1/runs?filter= and DELETE /api/v1/runs/{run}.

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

export class RunTree {
  private selected = "";
  private timer = 0;
  private collapsed = new Set<string>();

  constructor(private readonly root: HTMLElement, private readonly filter: HTMLInputElement,
    private readonly onDeleted: (id: string) => void) {
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
      runs = await listRuns(this.filter.value);
      this.filter.classList.remove("invalid");
    } catch (error) {
      this.filter.classList.add("invalid");
      this.root.replaceChildren(el("p", String((error as Error).message), "error"));
      return;
    }
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
