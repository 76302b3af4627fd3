// The gateway health table (last seen, versions, backlog, clock, battery, faults) and
// the config and release rollouts with their waves. Read-only: rollouts are driven from
// the CLI or REST by a configurator. A health event redraws the table at once with what
// it says (state, last seen, clock) and asks the fleet for the rest (backlog, battery,
// faults) at most every 10 s.

import { api } from "./api.js";
import { h, when } from "./dom.js";
import { clockState, faultCount, levelBadge, loadSites } from "./fleet.js";
import { t } from "./i18n.js";
import { onLive } from "./live.js";

//: A burst of health events asks the fleet again at most this often.
export const HEALTH_REFRESH_MS = 10000;

export async function showGateways(view) {
  const [index, gateways, rollouts] = await Promise.all([
    loadSites(),
    api.get("/api/v1/gateways"),
    api.get("/api/v1/rollouts", { limit: 50 }),
  ]);
  const health = new Map();
  const learn = (sites) => {
    for (const site of sites.list()) for (const g of site.gateways ?? []) health.set(g.gateway_id, g);
  };
  learn(index);
  const body = h("tbody", { id: "gateway-rows" });
  const render = () =>
    body.replaceChildren(
      ...gateways
        .sort((a, b) => b.alarm_level - a.alarm_level || a.id.localeCompare(b.id))
        .map((g) => gatewayRow(g, health.get(g.id) ?? {}, index)),
    );
  render();
  view.replaceChildren(
    h(
      "section.panel",
      {},
      h("h2", {}, t("gateways")),
      h(
        "div.table-wrap",
        {},
        h(
          "table.gateways-table",
          {},
          h(
            "thead",
            {},
            h(
              "tr",
              {},
              [t("gateway"), t("site"), t("state"), t("level"), t("last_seen"), t("agent_version"), t("config_version"), t("backlog"), t("clock"), t("battery"), t("faults")].map(
                (w) => h("th", { scope: "col" }, w),
              ),
            ),
          ),
          body,
        ),
      ),
    ),
    rolloutPanel(rollouts),
  );
  let asking = null;
  const askAgain = () => {
    asking ??= new Promise((resolve) => setTimeout(resolve, HEALTH_REFRESH_MS))
      .then(() => Promise.all([loadSites(), api.get("/api/v1/gateways")]))
      .then(([sites, fresh]) => {
        learn(sites);
        for (const site of sites.list()) index.put(site);
        gateways.splice(0, gateways.length, ...fresh);
        render();
      })
      .catch(() => {}) // the next health event asks again
      .finally(() => {
        asking = null;
      });
  };
  return onLive("health", (event) => {
    const row = health.get(event.gateway_id);
    if (row) Object.assign(row, event);
    render();
    askAgain();
  });
}

function gatewayRow(gateway, health, index) {
  const site = index.sites.get(gateway.site_id);
  const state = health.state ?? gateway.status;
  const battery = typeof health.battery_v === "number" ? `${health.battery_v.toFixed(1)} ${t("unit_v")}` : "—";
  const faults = faultCount(health.faults);
  const clock = clockState(health);
  return h(
    "tr",
    { dataset: { gatewayId: gateway.id } },
    h("td", {}, gateway.id),
    h("td", {}, site ? h("a", { href: `#/site/${encodeURIComponent(site.site_id)}` }, site.name) : gateway.site_id),
    h("td", {}, h(`span.chip.${state}`, {}, t(state))),
    h("td", {}, levelBadge(gateway.alarm_level)),
    h("td", {}, when(gateway.last_seen)),
    h("td", {}, gateway.agent_version ?? "—"),
    h("td", {}, health.config_version ?? "—"),
    h("td", {}, String(gateway.backlog ?? "—")),
    h("td", { class: `clock clock-${clock.state}` }, clock.text),
    h("td", {}, battery),
    h("td", { class: faults ? "warn" : null }, String(faults)),
  );
}

function rolloutPanel(rollouts) {
  return h(
    "section.panel",
    { id: "rollouts" },
    h("h2", {}, t("rollouts")),
    rollouts.length
      ? h(
          "ul.rollouts",
          {},
          rollouts.map((r) =>
            h(
              "li",
              {},
              h("strong", {}, `#${r.id} ${word("rollout", r.kind)} ${r.release ?? `#${r.config_id}`}`),
              ` · ${word("rollout_state", r.state)}${r.reason ? ` (${r.reason})` : ""} · ${when(r.created_at)}`,
              h(
                "ol.waves",
                {},
                r.waves.map((w) =>
                  h(
                    "li",
                    {},
                    `${t("rollout_wave")} ${w.number} (${w.spec}, ${w.size}): ${word("wave", w.status)} · ${t("wave_count_succeeded")} ${w.succeeded} · ${t("wave_count_failed")} ${w.failed} · ${t("wave_count_pending")} ${w.in_progress + w.waiting}`,
                  ),
                ),
              ),
            ),
          ),
        )
      : h("p.muted", {}, t("no_rollouts")),
  );
}

/** The word for a known value (`wave_failed`), else the value as the fleet sent it. */
function word(prefix, value) {
  const key = `${prefix}_${value}`;
  const text = t(key);
  return text === key ? value : text;
}
