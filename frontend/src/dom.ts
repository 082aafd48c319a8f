// Small DOM helpers shared by the views.

export function el<K extends keyof HTMLElementTagNameMap>(tag: K, text?: string, cls?: string):
  HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (cls) node.className = cls;
  return node;
}

/** A link that opens file:line in VS Code, showing "name (file:line)". */
export function sourceAnchor(href: string, text: string, title: string): HTMLAnchorElement {
  const a = el("a", text, "source");
  a.href = href;
  a.title = title;
  return a;
}

/** Sizes a canvas to its CSS box times the device pixel ratio; returns the 2D context scaled to CSS pixels. */
export function fitCanvas(canvas: HTMLCanvasElement, width: number, height: number):
  CanvasRenderingContext2D {
  const dpr = window.devicePixelRatio || 1;
  const w = Math.max(1, Math.floor(width * dpr));
  const h = Math.max(1, Math.floor(height * dpr));
  if (canvas.width !== w || canvas.height !== h) {
    canvas.width = w;
    canvas.height = h;
    canvas.style.width = `${width}px`;
    canvas.style.height = `${height}px`;
  }
  const ctx = canvas.getContext("2d") as CanvasRenderingContext2D;
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  return ctx;
}

/** Text clipped to fit maxWidth pixels (with an ellipsis), "" when nothing fits. */
export function fitText(ctx: CanvasRenderingContext2D, text: string, maxWidth: number): string {
  if (maxWidth < 12) return "";
  if (ctx.measureText(text).width <= maxWidth) return text;
  const avg = ctx.measureText("m").width * 0.8;
  let n = Math.floor(maxWidth / avg);
  while (n > 1 && ctx.measureText(text.slice(0, n) + "…").width > maxWidth) n--;
  return n > 1 ? text.slice(0, n) + "…" : "";
}
