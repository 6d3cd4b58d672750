// Starts `muse serve` on a free loopback port with a small synthetic model and an API key, for
// the client tests. MUSE_BINARY names the muse executable (default: ../../build/muse).
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
export const binary = process.env.MUSE_BINARY || resolve(here, "../../build/muse");
export const apiKey = "test-key-0123456789abcdef";

// synth: the `muse synth` shape arguments of the model to serve (default: a tiny Qwen3).
export async function startServer(extraArgs = [], synth = ["--dims", "embd=128,layers=2,heads=4,kv_heads=2,head_dim=32,ff=256,vocab=700,ctx=1024", "--type", "q8_0"]) {
  const dir = mkdtempSync(join(tmpdir(), "muse-node-"));
  const model = join(dir, "model.gguf");
  execFileSync(binary, ["synth", "--arch", "qwen3", ...synth, "-o", model], { stdio: "ignore" });
  // The end-of-generation tokens, for tests that need a generation to run on.
  const eogIds = JSON.parse(execFileSync(binary, ["tokenize", "-m", model, "--no-bos", "-p", "<|im_end|><|end_of_text|>"]).toString());
  const keys = join(dir, "keys.txt");
  writeFileSync(keys, apiKey + "\n");
  const child = spawn(binary, ["serve", "-m", model, "--port", "0", "--api-key-file", keys, "-t", "2", "-c", "1024",
    "--name", "muse-test", ...extraArgs], { stdio: ["ignore", "ignore", "pipe"] });
  let log = "";
  const url = await new Promise((ok, fail) => {
    const timer = setTimeout(() => fail(new Error("muse serve did not start:\n" + log)), 30000);
    child.stderr.on("data", (d) => {
      log += d;
      const m = log.match(/on (http:\/\/[0-9.]+:\d+)\//);
      if (m) {
        clearTimeout(timer);
        ok(m[1]);
      }
    });
    child.on("exit", (code) => fail(new Error(`muse serve exited with ${code}:\n${log}`)));
  });
  return {
    url,
    eogIds,
    child,
    log: () => log,
    async stop() {
      if (child.exitCode !== null) return child.exitCode;
      child.kill("SIGTERM");
      return await new Promise((ok) => child.on("exit", (code) => ok(code)));
    },
  };
}
