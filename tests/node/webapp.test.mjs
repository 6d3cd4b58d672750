// The web app in a real browser (playwright-core driving Debian's Chromium): send a message and
// see it stream, switch on Contemplating mode and see one lane per agent. Screenshots go to
// MUSE_ARTIFACTS (default ../../build/test-artifacts).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync } from "node:fs";
import { resolve, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { startServer, apiKey } from "./server.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const artifacts = process.env.MUSE_ARTIFACTS || resolve(here, "../../build/test-artifacts");
const browserPath = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].find((p) => existsSync(p));

let server;
let browser;

before(async () => {
  if (!browserPath) return;
  mkdirSync(artifacts, { recursive: true });
  server = await startServer();
  browser = await chromium.launch({ executablePath: browserPath, args: ["--no-sandbox"] });
});

after(async () => {
  if (browser) await browser.close();
  if (server) await server.stop();
});

test("chat streams, and Contemplating mode shows one lane per agent", { skip: !browserPath && "no Chromium (apt-get install chromium)" }, async () => {
  const page = await browser.newPage({ viewport: { width: 1200, height: 800 } });
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(server.url + "/");
  await page.locator("#settings summary").click();
  await page.fill("#api-key", apiKey);
  await page.fill("#max-tokens", "48");
  // A random-weight model may end a reply after a token or two: its end tokens are banned, so
  // the reply runs to its 48 tokens and streams at many lengths.
  const bias = Object.fromEntries(server.eogIds.map((id) => [String(id), -100]));
  await page.fill("#extra", JSON.stringify({ logit_bias: bias }));
  // Every rendering of the reply is recorded as it happens (the model is fast: polling from here
  // could miss the intermediate states; renderings within one network read coalesce).
  await page.evaluate(() => {
    window.__lengths = new Set();
    new MutationObserver(() => {
      const replies = document.querySelectorAll(".message.assistant");
      const last = replies[replies.length - 1];
      if (last) window.__lengths.add(last.textContent.length);
    }).observe(document.getElementById("messages"), { childList: true, subtree: true, characterData: true });
  });
  await page.fill("#input", "Write a short poem.");
  await page.click("#send");

  // Streaming: the reply is rendered at several lengths as chunks arrive, then the usage line.
  const reply = page.locator(".message.assistant").last();
  await reply.locator(".meta").waitFor({ timeout: 20000 });
  assert.match(await reply.locator(".meta").innerText(), /tokens .* tok\/s/);
  const lengths = await page.evaluate(() => window.__lengths.size);
  assert.ok(lengths >= 2, `the reply was rendered at ${lengths} lengths while it streamed`);
  // ... from many deltas, each applied as it came (the counter the page shows).
  const chunks = Number((await page.locator("#stats").innerText()).match(/(\d+) chunks/)[1]);
  assert.ok(chunks >= 10, `only ${chunks} deltas were applied`);
  await page.screenshot({ path: join(artifacts, "webapp-chat.png") });

  // Contemplating mode: lanes, one per agent, then the joined answer.
  await page.check("#contemplate");
  await page.fill("#agents", "3");
  await page.fill("#input", "What is 12 * 7?");
  await page.click("#send");
  const second = page.locator(".message.assistant").last();
  await second.locator(".lane").first().waitFor({ timeout: 20000 });
  await second.locator(".meta").waitFor({ timeout: 30000 });
  assert.equal(await second.locator(".lane").count(), 3);
  await page.screenshot({ path: join(artifacts, "webapp-contemplate.png") });

  // Conversations are kept in the browser: a reload shows both turns again.
  await page.reload();
  assert.equal(await page.locator(".message.user").count(), 2);
  assert.deepEqual(errors, []);
});
