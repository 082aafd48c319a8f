// Shared by the browser tests and the UI benchmark: a real micrologd on free
// ports serving the built UI, real runs recorded by the real client, and
// headless Chromium driven by playwright-core (Debian's /usr/bin/chromium,
// never a downloaded browser).
import { spawn, spawnSync } from "node:child_process";
import { createRequire } from "node:module";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");
export const FRONTEND = join(ROOT, "frontend");
export const ARTIFACTS = join(ROOT, "tests", "artifacts");
export const MICROLOGD = process.env.MICROLOGD || join(ROOT, "build", "collector", "micrologd");
export const PYTHON = process.env.ML_PYTHON || join(ROOT, ".venv", "bin", "python");

/** The environment of a profiled Python child: in the sanitizer build the
 * extension is instrumented but the interpreter is not, so the ASan runtime
 * is preloaded into Python only (ML_PYTHON_PRELOAD), never into node or
 * Chromium. */
export function pythonEnv(extra = {}) {
  const env = { ...process.env, ...extra };
  if (process.env.ML_PYTHON_PRELOAD) env.LD_PRELOAD = process.env.ML_PYTHON_PRELOAD;
  return env;
}
export const CHROMIUM = process.env.ML_CHROMIUM || "/usr/bin/chromium";

// playwright-core lives in frontend/node_modules (a devDependency there).
const require = createRequire(join(FRONTEND, "package.json"));
export const { chromium } = require("playwright-core");

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Starts micrologd --standalone in a fresh data dir with the built UI; resolves when it listens. */
export async function startCollector() {
  const dist = join(FRONTEND, "dist");
  if (!existsSync(join(dist, "app.js"))) throw new Error(`the UI is not built: ${dist} (npm run build)`);
  const dataDir = mkdtempSync(join(tmpdir(), "microlog-ui-"));
  const ready = join(dataDir, "ready.json");
  const proc = spawn(MICROLOGD, ["--standalone", "--data-dir", dataDir, "--http", "127.0.0.1:0",
    "--ready-file", ready, "--ui", dist], { stdio: ["ignore", "pipe", "pipe"] });
  let log = "";
  proc.stdout.on("data", (d) => (log += d));
  proc.stderr.on("data", (d) => (log += d));
  const deadline = Date.now() + 20000;
  while (!existsSync(ready)) {
    if (proc.exitCode !== null) throw new Error(`micrologd exited ${proc.exitCode}: ${log}`);
    if (Date.now() > deadline) {
      proc.kill("SIGKILL");
      throw new Error(`micrologd did not get ready: ${log}`);
    }
    await sleep(50);
  }
  await sleep(20);
  const info = JSON.parse(readFileSync(ready, "utf8"));
  return {
    http: info.http,
    dataDir,
    log: () => log,
    async stop() {
      if (proc.exitCode === null) {
        proc.kill("SIGTERM");
        const t = setTimeout(() => proc.kill("SIGKILL"), 10000);
        await new Promise((r) => proc.once("exit", r));
        clearTimeout(t);
      }
      rmSync(dataDir, { recursive: true, force: true });
      return proc.exitCode;
    },
  };
}

/** Records script under label with the real client; returns the run id from the printed box. */
export function record(server, label, script, env = {}) {
  const r = spawnSync(PYTHON, ["-m", "microlog", label, script], {
    env: pythonEnv({ MICROLOG_SERVER: server, TRACER_SAMPLE_DELAY: "0.005", ...env }),
    encoding: "utf8", timeout: 120000,
  });
  if (r.status !== 0) throw new Error(`profiled run failed (${r.status}): ${r.stderr}`);
  const m = /\/#([^\s┃]+)/.exec(r.stderr);
  if (!m) throw new Error(`no run URL in: ${r.stderr}`);
  return { id: decodeURIComponent(m[1]).replace(/\/$/, ""), stdout: r.stdout, stderr: r.stderr };
}

/** GET path; resolves {status, body} (JSON when it parses). */
export async function get(server, path) {
  const response = await fetch(server + path);
  const text = await response.text();
  let body = text;
  try {
    body = JSON.parse(text);
  } catch {
    // not JSON
  }
  return { status: response.status, body, headers: response.headers };
}

export function runPath(id, endpoint = "") {
  return `/api/v1/runs/${encodeURIComponent(id)}${endpoint ? `/${endpoint}` : ""}`;
}

/** Waits until the run is listed as complete. */
export async function waitComplete(server, id, timeout = 20000) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const r = await get(server, runPath(id));
    if (r.status === 200 && r.body.status !== "live") return r.body;
    if (Date.now() > deadline) throw new Error(`run ${id} not complete: ${JSON.stringify(r.body)}`);
    await sleep(100);
  }
}

export async function launchBrowser() {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
  });
}

export function artifact(name) {
  mkdirSync(ARTIFACTS, { recursive: true });
  return join(ARTIFACTS, name);
}
