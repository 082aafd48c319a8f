// Runs the UI unit tests (tests/ui/unit/*.test.ts) under node:test. Each test
// file is bundled with esbuild (which strips the types and pulls in the
// frontend modules it imports) into a temporary folder, then node --test runs
// the bundles. Exit status: node's (non-zero when any test fails).
import { build } from "esbuild";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const testDir = resolve(here, "../tests/ui/unit");
const files = readdirSync(testDir).filter((f) => f.endsWith(".test.ts")).sort();
const out = mkdtempSync(join(tmpdir(), "microlog-ui-unit-"));
try {
  await build({
    entryPoints: files.map((f) => join(testDir, f)),
    bundle: true, platform: "node", format: "esm", target: "node18",
    outdir: out, outExtension: { ".js": ".mjs" }, logLevel: "warning",
    external: ["node:*"],
  });
  const bundles = readdirSync(out).filter((f) => f.endsWith(".mjs")).map((f) => join(out, f));
  const r = spawnSync(process.execPath, ["--test", ...bundles], { stdio: "inherit" });
  process.exitCode = r.status ?? 1;
} finally {
  rmSync(out, { recursive: true, force: true });
}
