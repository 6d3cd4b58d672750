// The official openai package against a running `muse serve`: chat, streaming, tools, JSON
// schema, errors and cancellation.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import OpenAI from "openai";
import { startServer, apiKey } from "./server.mjs";

let server;
let client;

before(async () => {
  server = await startServer();
  client = new OpenAI({ apiKey, baseURL: server.url + "/v1", maxRetries: 0 });
});

after(async () => {
  const code = await server.stop();
  assert.equal(code, 0, "muse serve exits cleanly on SIGTERM");
});

test("models lists the served model", async () => {
  const models = await client.models.list();
  assert.deepEqual(models.data.map((m) => m.id), ["muse-test"]);
});

test("chat completion", async () => {
  const r = await client.chat.completions.create({
    model: "muse-test",
    messages: [{ role: "system", content: "Be brief." }, { role: "user", content: "Say hello." }],
    max_completion_tokens: 10,
    temperature: 0,
  });
  assert.equal(r.object, "chat.completion");
  assert.equal(r.choices.length, 1);
  assert.equal(r.choices[0].message.role, "assistant");
  assert.equal(typeof r.choices[0].message.content, "string");
  assert.equal(r.choices[0].finish_reason, "length");
  assert.equal(r.usage.completion_tokens, 10);
});

test("streaming yields the same text with usage at the end", async () => {
  const request = {
    model: "muse-test",
    messages: [{ role: "user", content: "Count to five." }],
    max_completion_tokens: 12,
    temperature: 0,
  };
  const whole = await client.chat.completions.create(request);
  const stream = await client.chat.completions.create({ ...request, stream: true, stream_options: { include_usage: true } });
  let text = "";
  let usage = null;
  let finish = null;
  for await (const chunk of stream) {
    for (const c of chunk.choices) {
      text += c.delta.content || "";
      if (c.finish_reason) finish = c.finish_reason;
    }
    if (chunk.usage) usage = chunk.usage;
  }
  assert.equal(text, whole.choices[0].message.content);
  assert.equal(finish, "length");
  assert.equal(usage.completion_tokens, 12);
});

test("tools are accepted and tool calls come back as OpenAI tool_calls", async () => {
  const tools = [{
    type: "function",
    function: { name: "get_weather", description: "Weather in a city", parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] } },
  }];
  const r = await client.chat.completions.create({
    model: "muse-test",
    messages: [
      { role: "user", content: "Weather in Paris?" },
      { role: "assistant", content: null, tool_calls: [{ id: "call_1", type: "function", function: { name: "get_weather", arguments: '{"city":"Paris"}' } }] },
      { role: "tool", tool_call_id: "call_1", content: "sunny, 21 C" },
    ],
    tools,
    max_completion_tokens: 8,
    temperature: 0,
  });
  const m = r.choices[0].message;
  assert.ok(typeof m.content === "string" || Array.isArray(m.tool_calls));
  for (const call of m.tool_calls || []) {
    assert.equal(call.type, "function");
    JSON.parse(call.function.arguments);
  }
});

test("a JSON schema constrains the output", async () => {
  const r = await client.chat.completions.create({
    model: "muse-test",
    messages: [{ role: "user", content: "A point." }],
    max_completion_tokens: 200,
    temperature: 0.7,
    seed: 7,
    response_format: {
      type: "json_schema",
      json_schema: { name: "point", strict: true, schema: { type: "object", properties: { x: { type: "integer" }, y: { type: "integer" } }, required: ["x", "y"], additionalProperties: false } },
    },
  });
  if (r.choices[0].finish_reason === "stop") {
    const v = JSON.parse(r.choices[0].message.content);
    assert.equal(typeof v.x, "number");
    assert.equal(typeof v.y, "number");
  } else {
    // Cut off by the token limit: still a prefix of a valid object.
    assert.ok(r.choices[0].message.content.startsWith("{"));
  }
});

test("errors arrive as the client's error classes", async () => {
  await assert.rejects(
    client.chat.completions.create({ model: "muse-test", messages: [], max_completion_tokens: 4 }),
    (e) => e instanceof OpenAI.BadRequestError && e.status === 400 && e.param === "messages",
  );
  await assert.rejects(
    client.chat.completions.create({ model: "muse-test", messages: [{ role: "user", content: "x" }], temperature: 9 }),
    (e) => e instanceof OpenAI.BadRequestError && /temperature/.test(e.message),
  );
  await assert.rejects(
    client.chat.completions.create({ model: "nope", messages: [{ role: "user", content: "x" }] }),
    (e) => e instanceof OpenAI.NotFoundError,
  );
  const stranger = new OpenAI({ apiKey: "wrong-key-0000000000", baseURL: server.url + "/v1", maxRetries: 0 });
  await assert.rejects(stranger.models.list(), (e) => e instanceof OpenAI.AuthenticationError && e.status === 401);
});

test("aborting a stream cancels its generation", async () => {
  const controller = new AbortController();
  const stream = await client.chat.completions.create(
    {
      model: "muse-test",
      messages: [{ role: "user", content: "Go on forever." }],
      max_completion_tokens: 900,
      stream: true,
      logit_bias: Object.fromEntries(server.eogIds.map((id) => [String(id), -100])),  // no early end
    },
    { signal: controller.signal },
  );
  let chunks = 0;
  try {
    for await (const chunk of stream) {
      if (++chunks === 3) controller.abort();  // (the client ends the iteration quietly or throws)
    }
  } catch (e) {
    assert.ok(e.name === "APIUserAbortError" || e.name === "AbortError", String(e));
  }
  assert.ok(chunks >= 3 && chunks < 100, `read ${chunks} chunks`);
  // The server notices and stops: nothing keeps running.
  const deadline = Date.now() + 10000;
  let metrics = "";
  while (Date.now() < deadline) {
    const res = await fetch(server.url + "/metrics", { headers: { Authorization: "Bearer " + apiKey } });
    metrics = await res.text();
    if (/muse_scheduler_running 0\b/.test(metrics) && /muse_requests_in_flight 0\b/.test(metrics)) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.match(metrics, /muse_scheduler_running 0\b/);
  assert.match(metrics, /status="499"/);
});
