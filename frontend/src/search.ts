// The search box (top right): one regular expression that highlights
// matching calls in the timeline, nodes in the flame graph and entries in the
// log. Case-insensitive, like the original's filter.

export interface Search {
  /** The text as typed. */
  text: string;
  /** Undefined when the box is empty or the text is not a valid regex. */
  regex?: RegExp;
  /** The reason an invalid text is rejected. */
  error?: string;
}

export function compileSearch(text: string): Search {
  const trimmed = text.trim();
  if (!trimmed) return { text };
  try {
    return { text, regex: new RegExp(trimmed, "i") };
  } catch (error) {
    return { text, error: (error as Error).message };
  }
}

/** True when search is active and matches any of the given strings. */
export function matches(search: Search, ...texts: (string | undefined)[]): boolean {
  const re = search.regex;
  if (!re) return false;
  return texts.some((t) => t !== undefined && re.test(t));
}

/** The set of frame ids whose name, module or file matches. */
export function matchingFrames(search: Search,
  frames: Record<string, { name: string; file: string; module?: string }>): Set<string> {
  const out = new Set<string>();
  if (!search.regex) return out;
  for (const [id, f] of Object.entries(frames)) {
    if (matches(search, f.name, f.module, f.file)) out.add(id);
  }
  return out;
}
