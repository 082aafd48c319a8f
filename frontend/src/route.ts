// The URL: "#label/timestamp" opens that run (the client prints
// <server>/#<label>/<timestamp>); an optional "?tab=log" (or flamegraph,
// design) selects the tab. Every change is a history entry, so the browser's
// back button walks back through runs and tabs.

export type Tab = "timeline" | "flamegraph" | "log" | "design";
export const TABS: Tab[] = ["timeline", "flamegraph", "log", "design"];

export interface Route {
  run: string;
  tab: Tab;
}

export function parseHash(hash: string): Route {
  let raw = hash.replace(/^#/, "");
  let tab: Tab = "timeline";
  const q = raw.indexOf("?");
  if (q >= 0) {
    const params = new URLSearchParams(raw.slice(q + 1));
    const t = params.get("tab") as Tab | null;
    if (t && TABS.includes(t)) tab = t;
    raw = raw.slice(0, q);
  }
  let run = raw;
  try {
    run = decodeURIComponent(raw);
  } catch {
    // A malformed escape: keep the text as typed.
  }
  return { run: run.replace(/^\/+|\/+$/g, ""), tab };
}

export function formatHash(route: Route): string {
  if (!route.run) return "";
  const run = route.run.split("/").map(encodeURIComponent).join("/");
  return `#${run}${route.tab === "timeline" ? "" : `?tab=${route.tab}`}`;
}
