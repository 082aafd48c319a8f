// A tiny, safe markdown renderer for log messages. Everything is
// HTML-escaped first; only then are a few constructs turned into tags:
// fenced and inline code, **bold**, *emphasis*, # headings, "- " lists and
// [text](http(s)://...) links. No raw HTML ever reaches the page, so a log
// line cannot inject markup or script.

export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) =>
    ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c] as string);
}

function inline(escaped: string): string {
  // Code spans first, protected from the other rules by placeholders.
  const codes: string[] = [];
  let s = escaped.replace(/`([^`]+)`/g, (_, code: string) => {
    codes.push(`<code>${code}</code>`);
    return `\u0000${codes.length - 1}\u0000`;
  });
  s = s.replace(/\*\*([^*]+)\*\*/g, "<strong>$1</strong>");
  s = s.replace(/(^|[^*])\*([^*\s][^*]*)\*/g, "$1<em>$2</em>");
  // The URL is already escaped (no quotes or angle brackets can remain).
  s = s.replace(/\[([^\]]+)\]\((https?:\/\/[^\s)]+)\)/g,
    '<a href="$2" target="_blank" rel="noopener noreferrer">$1</a>');
  return s.replace(/\u0000(\d+)\u0000/g, (_, i: string) => codes[Number(i)]);
}

export function renderMarkdown(text: string): string {
  const lines = text.replace(/\r\n?/g, "\n").split("\n");
  const out: string[] = [];
  let inCode = false;
  let code: string[] = [];
  let list = false;
  const closeList = () => {
    if (list) out.push("</ul>");
    list = false;
  };
  for (const line of lines) {
    if (/^\s*```/.test(line)) {
      if (inCode) {
        out.push(`<pre><code>${code.map(escapeHtml).join("\n")}</code></pre>`);
        code = [];
      } else {
        closeList();
      }
      inCode = !inCode;
      continue;
    }
    if (inCode) {
      code.push(line);
      continue;
    }
    const heading = /^(#{1,6})\s+(.*)$/.exec(line);
    const item = /^\s*[-*]\s+(.*)$/.exec(line);
    if (heading) {
      closeList();
      const level = Math.min(heading[1].length + 2, 6);
      out.push(`<h${level}>${inline(escapeHtml(heading[2]))}</h${level}>`);
    } else if (item) {
      if (!list) out.push("<ul>");
      list = true;
      out.push(`<li>${inline(escapeHtml(item[1]))}</li>`);
    } else {
      closeList();
      out.push(line.trim() ? `<p>${inline(escapeHtml(line))}</p>` : "");
    }
  }
  if (inCode) out.push(`<pre><code>${code.map(escapeHtml).join("\n")}</code></pre>`);
  closeList();
  return out.filter((l) => l !== "").join("");
}
