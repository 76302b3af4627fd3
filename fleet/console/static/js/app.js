// The console's entry: the session (sign-in with an API token, sign-out), the language
// switch, and hash routes (#/overview, #/site/ID, #/alarms, #/gateways). Buttons that
// change state appear only for roles that may use them; the server refuses them anyway.

import { ApiError, currentSession, signIn, signOut, whenSessionLost } from "./api.js";
import { h } from "./dom.js";
import { startCountdownTicker } from "./fleet.js";
import { currentLang, setLang, t, translateStatic } from "./i18n.js";
import { refreshLiveLabel, startLive, stopLive } from "./live.js";
import { showAlarms } from "./alarms.js";
import { showGateways } from "./gateways.js";
import { showOverview } from "./overview.js";
import { showSite } from "./site.js";

const view = document.getElementById("view");
let session = null;
let leavePage = () => {};
let rendering = 0;

function notice(text) {
  const el = document.getElementById("notice");
  el.hidden = !text;
  el.textContent = text ?? "";
}

function showSignedIn() {
  const signedIn = session !== null;
  document.getElementById("nav").hidden = !signedIn;
  document.getElementById("signout").hidden = !signedIn;
  const who = document.getElementById("who");
  who.hidden = !signedIn;
  who.textContent = signedIn ? `${session.name} · ${t(`role_${session.role}`)}` : "";
  document.body.dataset.role = signedIn ? session.role : "";
}

function signInPage(message) {
  const input = h("input", {
    id: "token",
    name: "token",
    type: "password",
    required: true,
    autocomplete: "off",
    spellcheck: "false",
  });
  const error = h("p.form-error", { id: "signin-error", role: "alert", hidden: !message }, message ?? "");
  const form = h(
    "form.signin",
    { "aria-labelledby": "signin-title" },
    h("h2", { id: "signin-title" }, t("sign_in_title")),
    h("p.muted", {}, t("sign_in_help")),
    h("label", { for: "token" }, t("token")),
    input,
    h("button", { type: "submit" }, t("sign_in")),
    error,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      session = await signIn(input.value.trim());
      input.value = "";
      start();
    } catch (failure) {
      error.hidden = false;
      error.textContent =
        failure instanceof ApiError && failure.status === 401 ? t("bad_token") : t("error", { detail: failure.message });
      input.select();
    }
  });
  leavePage();
  leavePage = () => {};
  view.replaceChildren(form);
  input.focus();
}

async function route() {
  if (!session) return;
  const ticket = ++rendering;
  // A filter or period chosen on the page redraws it: the keyboard stays where it was.
  const focused = view.contains(document.activeElement) ? document.activeElement.id : "";
  const before = view.dataset.page;
  leavePage();
  leavePage = () => {};
  notice(null);
  const [path, query] = (window.location.hash.replace(/^#/, "") || "/overview").split("?");
  const params = new URLSearchParams(query ?? "");
  const parts = path.split("/").filter(Boolean);
  const page = parts[0] ?? "overview";
  for (const link of document.querySelectorAll("#nav a")) {
    link.toggleAttribute("aria-current", link.dataset.route === page);
  }
  view.dataset.ready = "false";
  view.replaceChildren(h("p.loading", {}, t("loading")));
  try {
    let leave;
    if (page === "site" && parts[1]) leave = await showSite(view, decodeURIComponent(parts[1]), params);
    else if (page === "alarms") leave = await showAlarms(view, params, session);
    else if (page === "gateways") leave = await showGateways(view);
    else leave = await showOverview(view);
    if (ticket !== rendering) leave?.();
    else leavePage = leave ?? (() => {});
    view.dataset.page = page;
    view.dataset.route = window.location.hash || "#/overview";
    view.dataset.ready = "true";
    if (focused && before === page && ticket === rendering) document.getElementById(focused)?.focus();
  } catch (failure) {
    if (failure instanceof ApiError && failure.status === 401) return;
    notice(t("error", { detail: failure.message }));
  }
}

function start() {
  showSignedIn();
  startLive();
  route();
}

function sessionLost() {
  session = null;
  stopLive();
  showSignedIn();
  signInPage(t("session_over"));
}

async function main() {
  setLang(currentLang());
  translateStatic();
  const langButton = document.getElementById("lang");
  const labelLang = () => {
    langButton.textContent = currentLang() === "zh" ? "English" : "中文";
  };
  labelLang();
  langButton.addEventListener("click", () => {
    setLang(currentLang() === "zh" ? "en" : "zh");
    labelLang();
    translateStatic();
    showSignedIn();
    refreshLiveLabel();
    if (session) route();
    else signInPage();
  });
  document.getElementById("signout").addEventListener("click", async () => {
    try {
      await signOut();
    } finally {
      session = null;
      stopLive();
      showSignedIn();
      signInPage();
    }
  });
  whenSessionLost(sessionLost);
  window.addEventListener("hashchange", route);
  startCountdownTicker();
  try {
    session = await currentSession();
  } catch (failure) {
    notice(t("error", { detail: failure.message }));
  }
  if (session) start();
  else signInPage();
}

main();
