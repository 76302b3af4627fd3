// Server-sent events from /api/v1/stream: level, health and escalation. One EventSource
// for the whole console; pages subscribe while they are shown. After a lost connection
// the browser reconnects by itself, and subscribers get "resync" to reload what they
// show, since events sent in the gap are not replayed.

import { t } from "./i18n.js";

const listeners = { level: new Set(), health: new Set(), escalation: new Set(), resync: new Set() };
const RETRY_MS = 5000;
let source = null;
let stopped = false;
let hadError = false;

function showStatus(ok) {
  const el = document.getElementById("live");
  el.hidden = false;
  el.classList.toggle("off", !ok);
  el.textContent = ok ? `● ${t("live_on")}` : `○ ${t("live_off")}`;
  el.dataset.state = ok ? "on" : "off";
}

function dispatch(kind, event) {
  let data;
  try {
    data = JSON.parse(event.data);
  } catch {
    return; // a malformed event is dropped; the next resync shows the truth
  }
  for (const listener of listeners[kind]) listener(data);
}

export function startLive() {
  if (source) return;
  stopped = false;
  source = new EventSource("/api/v1/stream", { withCredentials: true });
  source.addEventListener("open", () => {
    showStatus(true);
    if (hadError) for (const listener of listeners.resync) listener();
    hadError = false;
  });
  source.addEventListener("error", () => {
    hadError = true;
    showStatus(false);
    // The browser retries by itself unless the answer was not a stream (e.g. 401 or a
    // proxy's error page): then start again later; an ended session shows on the next fetch.
    if (source.readyState === EventSource.CLOSED) {
      source = null;
      setTimeout(() => stopped || startLive(), RETRY_MS);
    }
  });
  for (const kind of ["level", "health", "escalation"]) {
    source.addEventListener(kind, (event) => dispatch(kind, event));
  }
}

export function stopLive() {
  stopped = true;
  source?.close();
  source = null;
  const el = document.getElementById("live");
  if (el) el.hidden = true;
}

/** Listen to `kind` until the returned function is called. */
export function onLive(kind, listener) {
  listeners[kind].add(listener);
  return () => listeners[kind].delete(listener);
}

export function refreshLiveLabel() {
  if (source) showStatus(source.readyState === EventSource.OPEN);
}
