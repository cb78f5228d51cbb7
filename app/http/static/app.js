// The search page: it talks only to the worker that served it, through the public HTTP API
// (POST /search, GET /stats, GET /dead-letters, GET /alerts), with the API key when the worker has one.
// Data is always written with textContent, never parsed as HTML.
"use strict";

const KEY_STORAGE = "streamvec-api-key";
const REFRESH_MS = 2000;
const DEAD_LETTERS_SHOWN = 10;
const ALERTS_SHOWN = 10;
const ALERT_KINDS = ["watchlist", "novel", "drift"];
const $ = (id) => document.getElementById(id);

// ---- API calls, the key asked for once --------------------------------------------

let apiKey = sessionStorage.getItem(KEY_STORAGE) || "";
let keyPrompt = null;  // one open prompt shared by every call that got a 401

async function call(method, path, body) {
  for (;;) {
    const headers = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (apiKey) headers["X-API-Key"] = apiKey;
    const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    let answer;
    try {
      answer = await response.json();
    } catch {
      answer = { error: `${response.status} ${response.statusText}` };
    }
    if (response.status !== 401) return { status: response.status, answer };
    await askForKey(apiKey ? "That key was refused; check STREAMVEC_API_KEY." : "");
  }
}

function askForKey(message) {
  if (!keyPrompt) {
    keyPrompt = new Promise((resolve) => {
      const dialog = $("key-dialog");
      show($("key-message"), message);
      $("key-input").value = "";
      $("key-form").onsubmit = (event) => {
        event.preventDefault();
        apiKey = $("key-input").value.trim();
        sessionStorage.setItem(KEY_STORAGE, apiKey);
        $("change-key").hidden = false;
        dialog.close();
        keyPrompt = null;
        resolve();
      };
      dialog.showModal();
      $("key-input").focus();
    });
  }
  return keyPrompt;
}

// ---- search ------------------------------------------------------------------------

function show(element, text) {
  element.textContent = text || "";
  element.hidden = !text;
}

// The filter as an object, or an error message saying what is wrong with it.
function readFilter() {
  const raw = $("filter").value.trim();
  if (!raw) return { filter: undefined };
  let filter;
  try {
    filter = JSON.parse(raw);
  } catch (error) {
    return { error: `filter: not JSON (${error.message})` };
  }
  if (filter === null || typeof filter !== "object" || Array.isArray(filter)) {
    return { error: 'filter: must be a JSON object, e.g. {"category": "animal"}' };
  }
  return { filter };
}

function checkFilter() {
  const { error } = readFilter();
  show($("filter-message"), error);
  $("filter").classList.toggle("invalid", Boolean(error));
  return !error;
}

async function search(event) {
  if (event) event.preventDefault();
  show($("search-message"), "");
  const query = $("query").value.trim();
  const k = Number($("k").value);
  if (!checkFilter()) return;
  if (!query) return show($("search-message"), $("mode").value === "id" ? "Give a document id." : "Type something to search for.");
  if (!Number.isInteger(k) || k < 1 || k > 1000) return show($("search-message"), "k: a whole number from 1 to 1000.");
  const body = { [$("mode").value]: query, k };
  const { filter } = readFilter();
  if (filter !== undefined) body.filter = filter;
  $("search-button").disabled = true;
  try {
    const { status, answer } = await call("POST", "/search", body);
    if (status !== 200) {
      const message = answer.error || `the worker answered ${status}`;
      // The worker's filter errors start with "filter": show them under the filter.
      if (message.startsWith("filter")) {
        show($("filter-message"), message);
        $("filter").classList.add("invalid");
      } else {
        show($("search-message"), message);
      }
      renderResults(null);
      return;
    }
    renderResults(answer);
  } catch (error) {
    show($("search-message"), `The worker did not answer (${error.message}); is it running?`);
  } finally {
    $("search-button").disabled = false;
  }
}

function renderResults(answer) {
  const list = $("results");
  list.replaceChildren();
  show($("summary"), answer ? `${answer.results.length} results in ${answer.took_ms.toFixed(1)} ms` : "");
  show($("partial"), answer && answer.partial
    ? `Partial answer: partitions ${answer.partitions.missing.join(", ")} did not answer; results from them may be missing.`
    : "");
  if (!answer) return;
  answer.results.forEach((hit, position) => list.append(renderHit(hit, position + 1)));
}

function renderHit(hit, rank) {
  const item = element("li", "hit");
  const head = element("div", "hit-head");
  head.append(element("span", "rank", String(rank)), element("span", "score", hit.score.toFixed(4)));
  const bar = element("span", "bar");
  const fill = element("span", "fill");
  fill.style.width = `${Math.max(0, Math.min(1, hit.score)) * 100}%`;
  bar.append(fill);
  head.append(bar, element("code", "id", hit.id));
  const more = element("button", "more", "More like this");
  more.type = "button";
  more.addEventListener("click", () => {
    $("mode").value = "id";
    $("query").value = hit.id;
    search();
  });
  head.append(more);
  item.append(head);
  if (typeof hit.text === "string") item.append(element("p", "text", hit.text));
  const metadata = element("dl", "metadata");
  for (const [name, value] of Object.entries(hit.metadata || {})) {
    metadata.append(element("dt", "", name), element("dd", "", typeof value === "string" ? value : JSON.stringify(value)));
  }
  item.append(metadata);
  return item;
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

// ---- live counters, dead letters and alerts ----------------------------------------

let deadLettered = null;  // the count the shown dead letters were read at
let alerted = null;  // the count the shown alerts were read at

async function refresh() {
  if (document.hidden || keyPrompt) return;
  try {
    const { status, answer } = await call("GET", "/stats");
    if (status !== 200) throw new Error(answer.error || `status ${status}`);
    renderCounters(answer);
    const count = answer.outcomes.dead_lettered || 0;
    if (count !== deadLettered) {
      deadLettered = count;
      await refreshDeadLetters();
    }
    const alerts = ALERT_KINDS.reduce((sum, kind) => sum + (answer.alerts?.by_kind?.[kind] || 0), 0);
    if (alerts !== alerted) {
      alerted = alerts;
      await refreshAlerts();
    }
    show($("counters-status"), `updated ${new Date().toLocaleTimeString()}`);
  } catch (error) {
    show($("counters-status"), `counters not updated: ${error.message}`);
  }
}

function renderCounters(stats) {
  const { answered, missing } = stats.partitions;
  $("count-documents").textContent = stats.documents.toLocaleString();
  $("count-partitions").textContent = `${answered.length} of ${answered.length + missing.length}`
    + (missing.length ? ` (missing ${missing.join(", ")})` : "");
  $("count-partitions").classList.toggle("bad", missing.length > 0);
  $("count-lag").textContent = (stats.lag ?? 0).toLocaleString();
  const workers = Object.values(stats.workers);
  $("count-workers").textContent = `${workers.filter((w) => !w.error).length} of ${workers.length} answering`;
  for (const outcome of ["indexed", "deleted", "stale", "unchanged", "dead_lettered"]) {
    $(`count-${outcome}`).textContent = (stats.outcomes[outcome] || 0).toLocaleString();
  }
  for (const kind of ALERT_KINDS) {
    $(`alerts-${kind}`).textContent = (stats.alerts?.by_kind?.[kind] || 0).toLocaleString();
  }
}

async function refreshDeadLetters() {
  const { status, answer } = await call("GET", `/dead-letters?limit=${DEAD_LETTERS_SHOWN}`);
  if (status !== 200) throw new Error(answer.error || `status ${status}`);
  const list = $("dead-letter-list");
  list.replaceChildren(...answer.dead_letters.map(renderDeadLetter));
  $("dead-letters-empty").hidden = answer.dead_letters.length > 0;
}

function renderDeadLetter(letter) {
  const item = element("li", "dead-letter");
  const head = element("div", "dead-letter-head");
  head.append(element("span", "reason", letter.reason),
    element("span", "muted", new Date(letter.timestamp * 1000).toLocaleString()),
    element("code", "key", letter.key === null ? "(no key)" : letter.key));
  item.append(head, element("p", "error", letter.error),
    element("code", "value", letter.value === null ? "null" : letter.value));
  return item;
}

async function refreshAlerts() {
  const { status, answer } = await call("GET", `/alerts?limit=${ALERTS_SHOWN}`);
  if (status !== 200) throw new Error(answer.error || `status ${status}`);
  $("alert-list").replaceChildren(...answer.alerts.map(renderAlert));
  $("alerts-empty").hidden = answer.alerts.length > 0;
}

function renderAlert(alert) {
  const item = element("li", "alert");
  const head = element("div", "alert-head");
  head.append(element("span", `kind kind-${alert.kind}`, alert.kind),
    element("span", "score", typeof alert.score === "number" ? alert.score.toFixed(3) : ""),
    element("code", "key", alert.id),
    element("span", "muted", new Date(alert.detected_ts * 1000).toLocaleString()));
  item.append(head, element("p", "what", describeAlert(alert)));
  return item;
}

function describeAlert(alert) {
  if (alert.kind === "watchlist") {
    const labels = (alert.labels || []).length ? ` [${alert.labels.join(", ")}]` : "";
    return `matches pattern ${alert.pattern}${labels}`;
  }
  if (alert.kind === "novel") return alert.nearest === null ? "nothing indexed before it" : `nearest: ${alert.nearest}`;
  return `partition ${alert.partition}, window ${alert.window}: drift above ${alert.threshold}`;
}

// ---- start -------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  $("worker").textContent = location.host;
  $("change-key").hidden = !apiKey;
  $("change-key").addEventListener("click", () => askForKey("").then(refresh));
  $("search-form").addEventListener("submit", search);
  $("filter").addEventListener("input", checkFilter);
  refresh();
  setInterval(refresh, REFRESH_MS);
});
