// Muse's web app: streaming chat over the server's OpenAI-compatible API, reasoning shown
// collapsible, Contemplating mode with one live lane per agent, conversations kept in this
// browser (localStorage). No dependencies, no network beyond this server.
"use strict";

const $ = (id) => document.getElementById(id);
const store = {
  load(key, fallback) {
    try {
      const v = localStorage.getItem("muse." + key);
      return v === null ? fallback : JSON.parse(v);
    } catch (e) {
      return fallback;
    }
  },
  save(key, value) {
    localStorage.setItem("muse." + key, JSON.stringify(value));
  },
};

let conversations = store.load("conversations", []);
let currentId = store.load("current", null);
let controller = null;

// ---- Markdown (a safe subset: text is escaped first, then marked up) ----

function escapeHtml(s) {
  return s.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

function inline(s) {
  return s
    .replace(/`([^`]+)`/g, "<code>$1</code>")
    .replace(/\*\*([^*]+)\*\*/g, "<strong>$1</strong>")
    .replace(/(^|[^*])\*([^*\s][^*]*)\*/g, "$1<em>$2</em>")
    .replace(/\[([^\]]+)\]\((https?:\/\/[^\s)]+)\)/g, '<a href="$2" target="_blank" rel="noopener">$1</a>');
}

function markdown(text) {
  const out = [];
  const parts = text.split(/```/);
  parts.forEach((part, i) => {
    if (i % 2 === 1) {
      const nl = part.indexOf("\n");
      const lang = nl > 0 ? part.slice(0, nl).trim() : "";
      const code = nl >= 0 ? part.slice(nl + 1) : part;
      out.push(`<pre><code class="lang-${escapeHtml(lang)}">${escapeHtml(code.replace(/\n$/, ""))}</code></pre>`);
      return;
    }
    let list = null;
    for (const raw of escapeHtml(part).split("\n")) {
      const item = raw.match(/^\s*(?:[-*]|\d+\.)\s+(.*)$/);
      if (item) {
        if (!list) {
          list = [];
        }
        list.push(`<li>${inline(item[1])}</li>`);
        continue;
      }
      if (list) {
        out.push(`<ul>${list.join("")}</ul>`);
        list = null;
      }
      const h = raw.match(/^(#{1,4})\s+(.*)$/);
      if (h) out.push(`<h${h[1].length + 2}>${inline(h[2])}</h${h[1].length + 2}>`);
      else if (raw.trim() === "") out.push("<br>");
      else out.push(`<div>${inline(raw)}</div>`);
    }
    if (list) out.push(`<ul>${list.join("")}</ul>`);
  });
  return out.join("");
}

// ---- Conversations ----

function current() {
  return conversations.find((c) => c.id === currentId);
}

function newConversation() {
  const c = { id: String(Date.now()) + Math.random().toString(16).slice(2, 6), title: "New chat", messages: [] };
  conversations.unshift(c);
  currentId = c.id;
  persist();
  render();
}

function persist() {
  store.save("conversations", conversations);
  store.save("current", currentId);
}

function renderList() {
  const ul = $("conversations");
  ul.innerHTML = "";
  for (const c of conversations) {
    const li = document.createElement("li");
    li.className = c.id === currentId ? "active" : "";
    const title = document.createElement("span");
    title.textContent = c.title;
    const del = document.createElement("button");
    del.textContent = "×";
    del.title = "Delete";
    del.onclick = (e) => {
      e.stopPropagation();
      conversations = conversations.filter((x) => x.id !== c.id);
      if (currentId === c.id) currentId = conversations.length ? conversations[0].id : null;
      persist();
      render();
    };
    li.append(title, del);
    li.onclick = () => {
      currentId = c.id;
      persist();
      render();
    };
    ul.append(li);
  }
}

function messageView(m) {
  const div = document.createElement("div");
  div.className = "message " + m.role;
  const role = document.createElement("div");
  role.className = "role";
  role.textContent = m.role === "user" ? "You" : "Muse";
  div.append(role);
  if (m.lanes && m.lanes.length) div.append(lanesView(m.lanes));
  if (m.reasoning) {
    const d = document.createElement("details");
    d.className = "reasoning";
    d.open = !!m.streaming;
    const s = document.createElement("summary");
    s.textContent = `Reasoning${m.reasoningTokens ? ` (${m.reasoningTokens} tokens)` : ""}`;
    const body = document.createElement("div");
    body.className = "body";
    body.textContent = m.reasoning;
    d.append(s, body);
    div.append(d);
  }
  const content = document.createElement("div");
  content.className = "content";
  content.innerHTML = markdown(m.content || "");
  div.append(content);
  if (m.error) {
    const e = document.createElement("div");
    e.className = "error";
    e.textContent = m.error;
    div.append(e);
  }
  if (m.meta) {
    const meta = document.createElement("div");
    meta.className = "meta";
    meta.textContent = m.meta;
    div.append(meta);
  }
  return div;
}

function lanesView(lanes) {
  const box = document.createElement("div");
  box.className = "lanes";
  for (const l of lanes) {
    const lane = document.createElement("div");
    lane.className = "lane " + l.status;
    lane.style.marginLeft = `${(l.depth || 0) * 16}px`;
    const conf = l.confidence == null ? "" : ` · conf ${l.confidence.toFixed(2)}`;
    const task = l.task ? ` · [${escapeHtml(l.task.slice(0, 40))}]` : "";
    lane.innerHTML = `agent ${l.agent + 1} · ${l.tokens} tok${conf} · <span class="status">${escapeHtml(
      l.status
    )}</span>${task} · `;
    lane.append(document.createTextNode(l.tail.replace(/\s+/g, " ")));
    box.append(lane);
  }
  return box;
}

function renderMessages() {
  const box = $("messages");
  box.innerHTML = "";
  const c = current();
  if (!c) return;
  for (const m of c.messages) box.append(messageView(m));
  box.scrollTop = box.scrollHeight;
}

function render() {
  renderList();
  renderMessages();
}

// ---- Talking to the server ----

function settings() {
  return {
    key: $("api-key").value.trim(),
    temperature: Number($("temperature").value),
    maxTokens: Number($("max-tokens").value),
    budget: Number($("thinking-budget").value),
    think: $("think").checked,
    contemplate: $("contemplate").checked,
    mode: $("contemplate-mode").value,
    agents: Number($("agents").value),
    extra: $("extra").value.trim(),
  };
}

function saveSettings() {
  const s = settings();
  delete s.key;  // the key stays in this tab's memory only
  store.save("settings", s);
}

function loadSettings() {
  const s = store.load("settings", null);
  if (!s) return;
  $("temperature").value = s.temperature;
  $("max-tokens").value = s.maxTokens;
  $("thinking-budget").value = s.budget;
  $("think").checked = s.think;
  $("contemplate").checked = s.contemplate;
  $("agents").value = s.agents;
  if (s.extra) $("extra").value = s.extra;
  if (s.mode) $("contemplate-mode").value = s.mode;
}

async function send(text) {
  if (!current()) newConversation();
  const c = current();
  const s = settings();
  c.messages.push({ role: "user", content: text });
  if (c.title === "New chat") c.title = text.slice(0, 40);
  const reply = { role: "assistant", content: "", reasoning: "", streaming: true, lanes: [] };
  c.messages.push(reply);
  persist();
  render();

  const body = {
    messages: c.messages.slice(0, -1).map((m) => ({ role: m.role, content: m.content })),
    stream: true,
    stream_options: { include_usage: true },
    temperature: s.temperature,
    max_completion_tokens: s.maxTokens,
    muse: { think: s.think },
  };
  if (s.budget >= 0) body.muse.thinking_budget = s.budget;
  if (s.contemplate) body.muse.contemplate = { agents: s.agents, mode: s.mode };
  if (s.extra) {
    // Any other request field, merged in as given (the server validates it).
    try {
      const extra = JSON.parse(s.extra);
      if (typeof extra !== "object" || Array.isArray(extra)) throw new Error("not an object");
      Object.assign(body, extra);
    } catch (e) {
      reply.error = "Extra request fields: " + e.message;
      reply.streaming = false;
      persist();
      render();
      return;
    }
  }

  controller = new AbortController();
  $("send").hidden = true;
  $("stop").hidden = false;
  const started = performance.now();
  let firstToken = 0;
  let chunks = 0;
  try {
    const headers = { "Content-Type": "application/json" };
    if (s.key) headers.Authorization = "Bearer " + s.key;
    const res = await fetch("/v1/chat/completions", {
      method: "POST",
      headers,
      body: JSON.stringify(body),
      signal: controller.signal,
    });
    if (!res.ok) {
      const err = await res.json().catch(() => ({}));
      throw new Error((err.error && err.error.message) || `HTTP ${res.status}`);
    }
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const frame = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        if (!frame.startsWith("data: ")) continue;
        const data = frame.slice(6);
        if (data === "[DONE]") continue;
        const chunk = JSON.parse(data);
        if (chunk.muse && chunk.muse.agents) reply.lanes = chunk.muse.agents;
        for (const choice of chunk.choices || []) {
          const d = choice.delta || {};
          if (d.reasoning_content) reply.reasoning += d.reasoning_content;
          if (d.content) reply.content += d.content;
          if (d.tool_calls) reply.content += d.tool_calls.map((t) => `\n[tool call ${t.function.name}]`).join("");
          if (d.reasoning_content || d.content) {
            chunks++;
            if (!firstToken) firstToken = performance.now();
          }
        }
        if (chunk.usage) {
          const seconds = (performance.now() - started) / 1000;
          const u = chunk.usage;
          reply.reasoningTokens = (u.completion_tokens_details || {}).reasoning_tokens || 0;
          reply.meta = `${u.completion_tokens} tokens (${reply.reasoningTokens} reasoning) in ${seconds.toFixed(1)} s · ${(
            u.completion_tokens / seconds
          ).toFixed(1)} tok/s`;
          if (firstToken) reply.meta += ` · first token ${((firstToken - started) / 1000).toFixed(2)} s`;
        }
        const seconds = (performance.now() - started) / 1000;
        $("stats").textContent = `${chunks} chunks · ${seconds.toFixed(1)} s`;
        renderMessages();
      }
    }
  } catch (e) {
    if (e.name !== "AbortError") reply.error = String(e.message || e);
  } finally {
    if (s.contemplate && !reply.content && !reply.error) reply.content = "_(no agent reached an answer)_";
    reply.streaming = false;
    controller = null;
    $("send").hidden = false;
    $("stop").hidden = true;
    persist();
    render();
  }
}

// ---- Wiring ----

$("composer").addEventListener("submit", (e) => {
  e.preventDefault();
  const text = $("input").value.trim();
  if (!text || controller) return;
  $("input").value = "";
  send(text);
});
$("input").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey) {
    e.preventDefault();
    $("composer").requestSubmit();
  }
});
$("stop").onclick = () => controller && controller.abort();
$("new-chat").onclick = newConversation;
for (const id of ["temperature", "max-tokens", "thinking-budget", "think", "contemplate", "contemplate-mode", "agents", "extra"])
  $(id).addEventListener("change", saveSettings);

loadSettings();
if (!current()) newConversation();
render();
