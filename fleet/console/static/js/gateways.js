// The gateway health table (last seen, versions, backlog, battery, faults) and the
// config and release rollouts with their waves. Read-only: rollouts are driven from
// the CLI or REST by a configurator.

import { api } from "./api.js";
import { h, when } from "./dom.js";
import { faultCount, levelBadge, loadSites } from "./fleet.js";
import { t } from "./i18n.js";
import { onLive } from "./live.js";

export async function showGateways(view) {
  const [index, gateways, rollouts] = await Promise.all([
    loadSites(),
    api.get("/api/v1/gateways"),
    api.get("/api/v1/rollouts", { limit: 50 }),
  ]);
  const health = new Map();
  for (const site of index.list()) for (const g of site.gateways ?? []) health.set(g.gateway_id, g);
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
              [t("gateway"), t("site"), t("state"), t("level"), t("last_seen"), t("agent_version"), t("config_version"), t("backlog"), t("battery"), t("faults")].map(
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
  return onLive("health", (event) => {
    const row = health.get(event.gateway_id);
    if (row) Object.assign(row, event);
    render();
  });
}

function gatewayRow(gateway, health, index) {
  const site = index.sites.get(gateway.site_id);
  const state = health.state ?? gateway.status;
  const battery = typeof health.battery_v === "number" ? `${health.battery_v.toFixed(1)} ${t("unit_v")}` : "—";
  const faults = faultCount(health.faults);
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
              h("strong", {}, `#${r.id} ${r.kind} ${r.release ?? `config ${r.config_id}`}`),
              ` · ${r.state}${r.reason ? ` (${r.reason})` : ""} · ${when(r.created_at)}`,
              h(
                "ol.waves",
                {},
                r.waves.map((w) =>
                  h(
                    "li",
                    {},
                    `${t("rollout_wave")} ${w.number} (${w.spec}, ${w.size}): ${w.status} · ✓${w.succeeded} ✗${w.failed} ⧗${w.in_progress + w.waiting}`,
                  ),
                ),
              ),
            ),
          ),
        )
      : h("p.muted", {}, t("no_rollouts")),
  );
}
