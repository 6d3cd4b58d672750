// Load: N concurrent streaming clients (default 32) against `muse serve` on loopback for a fixed
// time (LOAD_SECONDS, default 10), each sending one chat request after another. No request may
// fail and the server's memory must settle; prints time to first token (p50/p99) and aggregate
// tok/s. LOAD_SYNTH picks the synthetic model's shape ("--preset qwen3-0.6b --type q4_k_m" for a
// realistic one); the default is the tiny test model.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { startServer, apiKey } from "./server.mjs";

const clients = Number(process.env.LOAD_CLIENTS || 32);
const seconds = Number(process.env.LOAD_SECONDS || 10);
const maxTokens = Number(process.env.LOAD_MAX_TOKENS || 48);
const synth = process.env.LOAD_SYNTH ? process.env.LOAD_SYNTH.split(" ") : undefined;
// KV memory: small for the tiny default model, so the prefix cache fills early; give a realistic
// model room for every client's sequence (Qwen3-0.6B: 112 KiB per token).
const kvMiB = process.env.LOAD_KV_MB || "16";

function rssMiB(pid) {
  const m = readFileSync(`/proc/${pid}/status`, "utf8").match(/VmRSS:\s+(\d+) kB/);
  return Number(m[1]) / 1024;
}

function percentile(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

test(`${clients} streaming clients for ${seconds} s`, { timeout: (seconds + 120) * 1000 }, async () => {
  const server = await startServer(["--quiet", "--max-concurrent-per-key", String(clients), "--kv-budget-mb", kvMiB], synth);
  try {
    const ttft = [];
    let tokens = 0, requests = 0;
    const failures = [];
    const rss = [];
    const start = performance.now();
    const end = start + seconds * 1000;
    const sampler = setInterval(() => rss.push(rssMiB(server.child.pid)), 250);
    async function client(i) {
      let n = 0;
      while (performance.now() < end) {
        const t0 = performance.now();
        let first = 0;
        try {
          const res = await fetch(server.url + "/v1/chat/completions", {
            method: "POST",
            headers: { "Content-Type": "application/json", Authorization: "Bearer " + apiKey },
            body: JSON.stringify({
              messages: [{ role: "user", content: `Client ${i}, request ${n++}: tell me something.` }],
              max_completion_tokens: maxTokens,
              stream: true,
              stream_options: { include_usage: true },
              temperature: 0.8,
              seed: i * 1000 + n,
            }),
          });
          if (res.status !== 200) throw new Error(`HTTP ${res.status}: ${await res.text()}`);
          const reader = res.body.getReader();
          const decoder = new TextDecoder();
          let buffer = "", done = false;
          for (;;) {
            const { value, done: eof } = await reader.read();
            if (eof) break;
            buffer += decoder.decode(value, { stream: true });
            let cut;
            while ((cut = buffer.indexOf("\n\n")) >= 0) {
              const frame = buffer.slice(0, cut);
              buffer = buffer.slice(cut + 2);
              if (!frame.startsWith("data: ")) continue;
              if (frame === "data: [DONE]") { done = true; continue; }
              const chunk = JSON.parse(frame.slice(6));
              const delta = chunk.choices.length ? chunk.choices[0].delta : {};
              if (!first && (delta.content || delta.reasoning_content)) first = performance.now();
              if (chunk.usage) tokens += chunk.usage.completion_tokens;
            }
          }
          if (!done) throw new Error("the stream ended without [DONE]");
          if (first) ttft.push(first - t0);
          requests++;
        } catch (e) {
          failures.push(String(e.message || e));
        }
      }
    }
    await Promise.all(Array.from({ length: clients }, (_, i) => client(i)));
    clearInterval(sampler);
    const elapsed = (performance.now() - start) / 1000;
    ttft.sort((a, b) => a - b);
    const half = rss[Math.floor(rss.length / 2)], last = rss[rss.length - 1], peak = Math.max(...rss);
    const report = {
      clients, seconds: Number(elapsed.toFixed(1)), requests, failures: failures.length,
      ttft_p50_ms: Number(percentile(ttft, 50).toFixed(1)), ttft_p99_ms: Number(percentile(ttft, 99).toFixed(1)),
      aggregate_tok_s: Number((tokens / elapsed).toFixed(1)),
      rss_mib: { at_half: Number(half.toFixed(1)), at_end: Number(last.toFixed(1)), peak: Number(peak.toFixed(1)) },
    };
    console.log("load: " + JSON.stringify(report));
    if (process.env.LOAD_RSS_TRACE) console.log("rss: " + rss.map((x) => x.toFixed(0)).join(" "));
    assert.deepEqual(failures.slice(0, 3), []);
    assert.ok(requests >= clients, "every client completed requests");
    // Stable memory: once the prefix cache has filled its KV budget (well before half time),
    // RSS grows by at most 10% (plus allocator noise).
    if (process.env.LOAD_CHECK_RSS !== "0")
      assert.ok(last <= half * 1.10 + 4, `RSS grew from ${half.toFixed(1)} to ${last.toFixed(1)} MiB`);
  } finally {
    await server.stop();
  }
});
