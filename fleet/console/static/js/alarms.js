// Alarm history with filters (site, level, period, answered or not). An operator (or
// admin) acknowledges an alarm and records a person's answer here; a viewer gets the
// same table without any button. The server checks the role again on every POST.

import { api, roleAtLeast } from "./api.js";
import { h, when } from "./dom.js";
import { levelBadge, loadSites } from "./fleet.js";
import { levelName, t } from "./i18n.js";
import { onLive } from "./live.js";

const PERIODS = { "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400, all: null };
const VIAS = ["phone", "sms", "radio", "in_person"];

export async function showAlarms(view, params, session) {
  const filters = {
    site: params.get("site") ?? "",
    level: params.get("level") ?? "",
    period: params.get("period") in PERIODS ? params.get("period") : "7d",
    answered: params.get("answered") ?? "",
  };
  const index = await loadSites();
  const rows = h("tbody", { id: "alarm-rows" });
  const count = h("p.muted", { id: "alarm-count", "aria-live": "polite" });
  view.replaceChildren(
    h(
      "section.panel.alarms-page",
      {},
      h("h2", {}, t("alarm_history")),
      filterForm(filters, index),
      count,
      h(
        "div.table-wrap",
        {},
        h(
          "table.alarms-table",
          {},
          h(
            "thead",
            {},
            h(
              "tr",
              {},
              [t("level"), t("site"), t("rule"), t("raised"), t("state"), t("receipts"), ""].map((w) =>
                h("th", { scope: "col" }, w),
              ),
            ),
          ),
          rows,
        ),
      ),
    ),
  );
  const operator = roleAtLeast(session.role, "operator");
  // A live change reloads the table, but never under an operator's half-typed form: the
  // reload waits until the form is sent or cancelled.
  let waiting = false;
  const formOpen = () => {
    if (!rows.querySelector("form")) return false;
    waiting = true;
    rows.dataset.reloadWaiting = "true";
    return true;
  };
  const load = async () => {
    if (formOpen()) return;
    waiting = false;
    delete rows.dataset.reloadWaiting;
    const alarms = await fetchAlarms(filters, index);
    // A form may have opened while the alarms were on their way: it is not wiped either.
    if (formOpen()) return;
    count.textContent = t("count_alarms", { n: alarms.length });
    // The keyboard keeps its place: a focused button is focused again in its new row.
    const focused = document.activeElement;
    const place = rows.contains(focused)
      ? [focused.closest("tr")?.dataset.alarmId, [...focused.classList].find((c) => c.startsWith("act-"))]
      : null;
    rows.replaceChildren(...alarms.map((a) => alarmRow(a, index, operator)));
    if (place?.[0]) {
      const row = rows.querySelector(`tr[data-alarm-id="${Number(place[0])}"]`);
      (row?.querySelector(place[1] ? `.${place[1]}` : ".actions button") ?? row?.querySelector("a"))?.focus();
    }
  };
  rows.addEventListener("formclosed", () => waiting && load());
  await load();
  return onLive("level", () => load());
}

function filterForm(filters, index) {
  const select = (name, label, options) =>
    h(
      "label",
      {},
      `${label} `,
      h(
        "select",
        { name, id: `filter-${name}` },
        options.map(([value, text]) =>
          h("option", { value, selected: value === filters[name] || null }, text),
        ),
      ),
    );
  const sites = index.list().sort((a, b) => a.name.localeCompare(b.name));
  const form = h(
    "form.filters",
    { "aria-label": t("filter") },
    select("site", t("site"), [["", t("all")], ...sites.map((s) => [s.site_id, s.name])]),
    select("level", t("level"), [["", t("all")], ...[4, 3, 2, 1].map((n) => [String(n), levelName(n)])]),
    select("period", t("period"), Object.keys(PERIODS).map((k) => [k, t(`period_${k}`)])),
    select("answered", t("answered_filter"), [["", t("all")], ["yes", t("yes")], ["no", t("no")]]),
  );
  form.addEventListener("change", () => {
    const query = new URLSearchParams();
    for (const [key, value] of new FormData(form)) if (value) query.set(key, String(value));
    window.location.hash = `#/alarms?${query}`;
  });
  form.addEventListener("submit", (event) => event.preventDefault());
  return form;
}

async function fetchAlarms(filters, index) {
  const seconds = PERIODS[filters.period];
  const params = { limit: 2000, since: seconds ? Date.now() / 1000 - seconds : undefined };
  const site = filters.site ? index.sites.get(filters.site) : null;
  let alarms;
  if (site && site.gateways.length) {
    alarms = (
      await Promise.all(
        site.gateways.map((g) => api.get("/api/v1/alarms", { ...params, gateway_id: g.gateway_id })),
      )
    ).flat();
  } else {
    alarms = await api.get("/api/v1/alarms", params);
    if (site) alarms = [];
  }
  return alarms
    .filter((a) => !filters.level || a.peak_level === Number(filters.level))
    .filter((a) => !filters.answered || (a.receipts.length > 0) === (filters.answered === "yes"))
    .sort((a, b) => b.raised_at - a.raised_at);
}

function alarmRow(alarm, index, operator) {
  const site = index.siteFor(alarm.gateway_id);
  const row = h("tr", { dataset: { alarmId: String(alarm.id) } });
  const fill = (current) => {
    const receipts = current.receipts.length
      ? current.receipts.map((r) =>
          h("div", {}, `${r.person}${r.via ? ` (${viaName(r.via)})` : ""} · ${when(r.confirmed_at)}`),
        )
      : h("span.warn", {}, t("not_answered"));
    const ack = current.acknowledged_at
      ? h("div.ok", {}, t("acknowledged_by", { who: current.acknowledged_by ?? "", at: when(current.acknowledged_at) }))
      : h("div.warn", {}, t("not_acknowledged"));
    const actions = h("div.actions");
    if (operator) {
      if (!current.acknowledged_at) {
        actions.append(
          h(
            "button.act-ack",
            { type: "button", onclick: (event) => openForm(actions, ackForm(current, fill), event.currentTarget) },
            t("acknowledge"),
          ),
        );
      }
      actions.append(
        h(
          "button.act-answer",
          { type: "button", onclick: (event) => openForm(actions, answerForm(current, fill), event.currentTarget) },
          t("record_answer"),
        ),
      );
    }
    row.replaceChildren(
      h("td", {}, levelBadge(current.peak_level)),
      h(
        "td",
        {},
        site.site_id ? h("a", { href: `#/site/${encodeURIComponent(site.site_id)}` }, site.name) : site.name,
      ),
      h("td", {}, current.rule),
      h("td", {}, when(current.raised_at)),
      h("td", {}, current.active ? t("active") : `${t("ended")} ${when(current.cleared_at)}`, ack),
      h("td", {}, receipts),
      h("td", {}, actions),
    );
  };
  fill(alarm);
  return row;
}

function viaName(via) {
  return VIAS.includes(via) ? t(`via_${via}`) : via;
}

/**
 * Remove a form (the keyboard goes back to the button that opened it) and tell the table,
 * which may have a reload waiting.
 */
function closeForm(form) {
  const table = form.closest("tbody");
  const opener = form.opener;
  form.remove();
  if (opener?.isConnected) opener.focus();
  table?.dispatchEvent(new Event("formclosed"));
}

/** Open `form` in `cell` with the keyboard in its first field; Escape cancels it. */
function openForm(cell, form, opener) {
  for (const open of cell.querySelectorAll("form")) open.remove();
  form.opener = opener;
  cell.append(form);
  form.querySelector("input, select")?.focus();
}

function actionForm(className, fields, submitText, send) {
  const error = h("p.form-error", { role: "alert", hidden: true });
  const form = h(
    `form.${className}`,
    {},
    fields,
    h(
      "div.form-buttons",
      {},
      h("button", { type: "submit" }, submitText),
      h("button", { type: "button", title: t("press_escape"), onclick: () => closeForm(form) }, t("cancel")),
    ),
    error,
  );
  form.addEventListener("keydown", (event) => {
    if (event.key === "Escape") {
      event.preventDefault();
      closeForm(form);
    }
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    const table = form.closest("tbody");
    const row = form.closest("tr");
    try {
      await send(new FormData(form));
      // The row is drawn again without the form: the keyboard goes to its next action
      // (after an acknowledgement, recording an answer), else to the row's site.
      (row?.querySelector(".actions button") ?? row?.querySelector("a"))?.focus();
      table?.dispatchEvent(new Event("formclosed"));
    } catch (failure) {
      error.hidden = false;
      error.textContent = failure.status === 403 ? t("forbidden") : t("error", { detail: failure.message });
      button.disabled = false;
    }
  });
  return form;
}

function ackForm(alarm, fill) {
  return actionForm(
    "ack-form",
    [h("label", {}, `${t("note")} `, h("input", { name: "note", maxlength: 500, autocomplete: "off" }))],
    t("acknowledge"),
    async (data) => {
      const note = String(data.get("note") ?? "").trim();
      fill(await api.post(`/api/v1/alarms/${alarm.id}/acknowledge`, { note: note || null }));
    },
  );
}

function answerForm(alarm, fill) {
  return actionForm(
    "answer-form",
    [
      h("label", {}, `${t("person")} `, h("input", { name: "person", required: true, maxlength: 200, autocomplete: "off" })),
      h(
        "label",
        {},
        `${t("via")} `,
        h("select", { name: "via" }, VIAS.map((v) => h("option", { value: v }, t(`via_${v}`)))),
      ),
    ],
    t("record_answer"),
    async (data) => {
      const person = String(data.get("person") ?? "").trim();
      fill(await api.post(`/api/v1/alarms/${alarm.id}/receipts`, { person, via: String(data.get("via")) }));
    },
  );
}
