// The playground: the same /v1 endpoints any client calls, with the key typed here (if any).
"use strict";

const $ = (id) => document.getElementById(id);
const history = [];
let controller = null;

function headers() {
  const h = { "Content-Type": "application/json" };
  const key = $("api-key").value.trim();
  if (key) h["Authorization"] = `Bearer ${key}`;
  return h;
}

function showError(message) {
  $("error").textContent = message || "";
}

async function errorOf(response) {
  try {
    const body = await response.json();
    return body.error ? body.error.message : `HTTP ${response.status}`;
  } catch (_) {
    return `HTTP ${response.status}`;
  }
}

async function loadModels() {
  const response = await fetch("/v1/models", { headers: headers() });
  if (!response.ok) {
    showError(`Models: ${await errorOf(response)}`);
    return;
  }
  // Only models that can chat: an embedding model would answer a message with an error.
  const models = (await response.json()).data.filter((model) =>
    (model.capabilities || ["chat"]).includes("chat"),
  );
  const select = $("model");
  const chosen = select.value;
  select.innerHTML = "";
  for (const model of models) {
    const option = document.createElement("option");
    option.value = option.textContent = model.id;
    select.appendChild(option);
  }
  if (chosen && models.some((model) => model.id === chosen)) select.value = chosen;
  showError(models.length ? "" : "No chat model is served right now.");
}

function addMessage(role, text) {
  const div = document.createElement("div");
  div.className = `message ${role}`;
  const label = document.createElement("span");
  label.className = "role";
  label.textContent = role;
  const body = document.createElement("span");
  body.className = "text";
  body.textContent = text;
  div.append(label, body);
  $("messages").appendChild(div);
  $("messages").scrollTop = $("messages").scrollHeight;
  return body;
}

// Server-sent events from a fetch body: yields each "data:" payload.
async function* events(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const frame = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      for (const line of frame.split("\n")) {
        if (line.startsWith("data: ")) yield line.slice(6);
      }
    }
  }
}

async function send(text) {
  history.push({ role: "user", content: text });
  addMessage("user", text);
  const out = addMessage("assistant", "");
  const body = {
    model: $("model").value,
    messages: history,
    temperature: Number($("temperature").value),
    stream: true,
    stream_options: { include_usage: true },
  };
  // Empty: as many as the model's context leaves (OpenAI's default), so that a first message
  // fits whatever model is chosen.
  if ($("max-tokens").value) body.max_tokens = Number($("max-tokens").value);
  controller = new AbortController();
  $("send").disabled = true;
  $("stop").disabled = false;
  showError("");
  const started = performance.now();
  let first = null;
  let usage = null;
  try {
    const response = await fetch("/v1/chat/completions", {
      method: "POST",
      headers: headers(),
      body: JSON.stringify(body),
      signal: controller.signal,
    });
    if (!response.ok) throw new Error(await errorOf(response));
    for await (const data of events(response)) {
      if (data === "[DONE]") break;
      const chunk = JSON.parse(data);
      if (chunk.error) throw new Error(chunk.error.message);
      if (chunk.usage) usage = chunk.usage;
      const delta = chunk.choices && chunk.choices[0] && chunk.choices[0].delta;
      if (delta && delta.content) {
        if (first === null) first = performance.now();
        out.textContent += delta.content;
        $("messages").scrollTop = $("messages").scrollHeight;
      }
    }
    history.push({ role: "assistant", content: out.textContent });
    const ended = performance.now();
    if (first !== null && usage) {
      const seconds = Math.max((ended - first) / 1000, 1e-3);
      const rate = usage.completion_tokens > 1 ? (usage.completion_tokens - 1) / seconds : 0;
      $("stats").textContent =
        `Time to first token ${((first - started) / 1000).toFixed(2)} s · ` +
        `${usage.completion_tokens} tokens · ${rate.toFixed(1)} tokens/s`;
    }
  } catch (error) {
    if (error.name !== "AbortError") showError(error.message);
    history.pop();
  } finally {
    controller = null;
    $("send").disabled = false;
    $("stop").disabled = true;
  }
}

async function refreshStatus() {
  try {
    const response = await fetch("/status");
    const rows = (await response.json()).models || [];
    const tbody = $("status-rows");
    tbody.innerHTML = "";
    for (const row of rows) {
      const tr = document.createElement("tr");
      tr.dataset.model = row.model;
      for (const value of [row.model, row.live_workers, row.running, row.waiting, row.queued]) {
        const td = document.createElement("td");
        td.textContent = value;
        tr.appendChild(td);
      }
      tbody.appendChild(tr);
    }
  } catch (_) {
    // the front is restarting: the next poll tries again
  }
}

$("composer").addEventListener("submit", (event) => {
  event.preventDefault();
  const text = $("prompt").value.trim();
  if (!text || controller) return;
  $("prompt").value = "";
  send(text);
});
$("prompt").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey) {
    event.preventDefault();
    $("composer").requestSubmit();
  }
});
$("stop").addEventListener("click", () => controller && controller.abort());
$("clear").addEventListener("click", () => {
  history.length = 0;
  $("messages").innerHTML = "";
  $("stats").textContent = "";
});
$("api-key").addEventListener("change", loadModels);
$("api-base").textContent = `${location.origin}/v1`;
loadModels();
refreshStatus();
setInterval(refreshStatus, 2000);
