// One site: a chart per channel over 24 h / 7 d / 30 d (min-avg-max per bucket), the rule
// thresholds as coloured bands, alarm marks on the time axis, the roster and recent alarms.
// Bands are drawn only where a rule's thresholds are in the channel's own units; other
// rules (rain over a window, rates) list their thresholds under the chart instead of
// drawing them against values they do not apply to.

import { api, ApiError } from "./api.js";
import { h, when } from "./dom.js";
import { LEVEL_COLOURS, levelBadge, levelNumber } from "./fleet.js";
import { levelName, t } from "./i18n.js";
import { onLive } from "./live.js";

const PERIODS = { "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400 };
const BUCKETS = 720;
//: Rule kinds whose thresholds compare the channel's value itself.
const VALUE_RULES = new Set(["water_level"]);
const BAND_ORDER = ["blue", "yellow", "orange", "red"];

export async function showSite(view, siteId, params) {
  const period = params.get("period") in PERIODS ? params.get("period") : "24h";
  let site;
  try {
    site = await api.get(`/api/v1/sites/${encodeURIComponent(siteId)}`);
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) {
      view.replaceChildren(h("p.notice-inline", {}, t("not_found")));
      return () => {};
    }
    throw error;
  }
  const until = Date.now() / 1000;
  const since = until - PERIODS[period];
  const charts = h("div.charts");
  const badge = h("span", { id: "site-level" }, levelBadge(site.level));
  view.replaceChildren(
    h(
      "div.site",
      {},
      h("h2", {}, site.name, " ", badge),
      h(
        "p.site-gateways",
        {},
        site.gateways.map((g) => h(`span.chip.${g.state}`, {}, `${g.gateway_id} · ${t(g.state)}`)),
      ),
      periodSwitch(siteId, period),
      charts,
      h("div.site-lower", {}, rosterPanel(siteId), h("section.panel", { id: "site-alarms" })),
    ),
  );

  const alarms = (
    await Promise.all(
      site.gateways.map((g) =>
        api.get("/api/v1/alarms", { gateway_id: g.gateway_id, since, limit: 500 }),
      ),
    )
  ).flat();
  renderRecentAlarms(view.querySelector("#site-alarms"), alarms);
  const plots = [];
  for (const gateway of site.gateways) {
    for (const channel of await channelsOf(site, gateway)) {
      const rules = (site.rules ?? []).filter((r) => sameChannel(r.channel, channel.channel));
      const box = h("figure.chart", { dataset: { channel: channel.channel } });
      charts.append(box);
      const series = await api.get(
        `/api/v1/gateways/${encodeURIComponent(gateway.gateway_id)}/readings`,
        { channel: channel.channel, since, until, step: PERIODS[period] / BUCKETS },
      );
      plots.push(drawChart(box, channel, series, rules, alarms));
    }
  }
  const stop = onLive("level", (event) => {
    if (event.site_id === siteId) badge.replaceChildren(levelBadge(event.level));
  });
  return () => {
    stop();
    for (const plot of plots) plot?.destroy();
  };
}

function periodSwitch(siteId, current) {
  return h(
    "nav.periods",
    { "aria-label": t("period") },
    Object.keys(PERIODS).map((key) =>
      h(
        "a.period",
        {
          href: `#/site/${encodeURIComponent(siteId)}?period=${key}`,
          "aria-current": key === current ? "true" : null,
        },
        t(`period_${key}`),
      ),
    ),
  );
}

async function channelsOf(site, gateway) {
  if (site.channels?.length) return site.channels;
  const names = await api.get(`/api/v1/gateways/${encodeURIComponent(gateway.gateway_id)}/channels`);
  return names.map((name) => ({ channel: name, quantity: null, unit: null }));
}

/** A rule names "device.channel"; readings are stored by channel. */
function sameChannel(ruleChannel, channel) {
  return ruleChannel === channel || ruleChannel?.endsWith(`.${channel}`) || channel.endsWith(`.${ruleChannel}`);
}

/** [[lower, upper, level], ...] bands from a rule's thresholds (upper null: no top). */
export function thresholdBands(thresholds) {
  const steps = BAND_ORDER.filter((name) => typeof thresholds?.[name] === "number").map(
    (name) => [thresholds[name], levelNumber(name)],
  );
  steps.sort((a, b) => a[0] - b[0]);
  return steps.map(([value, level], i) => [value, steps[i + 1]?.[0] ?? null, level]);
}

function drawChart(box, channel, series, rules, alarms) {
  const buckets = series.buckets ?? [];
  const step = series.step ?? 0;
  const xs = buckets.map((b) => b.start + step / 2);
  const title = `${channel.quantity ?? channel.channel}${channel.unit ? ` (${channel.unit})` : ""}`;
  const bandRules = rules.filter((r) => r.thresholds && VALUE_RULES.has(r.kind));
  const listedRules = rules.filter((r) => r.thresholds && !VALUE_RULES.has(r.kind));
  const bands = bandRules.flatMap((r) => thresholdBands(r.thresholds));
  box.dataset.bands = String(bands.length);
  box.dataset.points = String(buckets.filter((b) => b.count > 0).length);
  box.append(h("figcaption", {}, title));
  const legend = [...bandRules, ...listedRules].map((r) =>
    h(
      "li",
      {},
      `${r.id} (${r.kind}): `,
      thresholdBands(r.thresholds).map(([value, , level]) =>
        h(`span.level.level-${level}`, {}, `${levelName(level)} ≥ ${value}`),
      ),
    ),
  );
  if (!xs.length || !buckets.some((b) => b.count > 0)) {
    box.append(h("p.muted", {}, t("no_readings")));
    if (legend.length) box.append(h("ul.thresholds", { "aria-label": t("thresholds") }, legend));
    return null;
  }
  const data = [
    xs,
    buckets.map((b) => b.avg),
    buckets.map((b) => b.min),
    buckets.map((b) => b.max),
  ];
  const values = buckets.flatMap((b) => [b.min, b.max]).filter((v) => v !== null);
  const yRange = [Math.min(...values), Math.max(...values)];
  for (const [lower] of bands) {
    yRange[0] = Math.min(yRange[0], lower);
    yRange[1] = Math.max(yRange[1], lower);
  }
  const pad = (yRange[1] - yRange[0]) * 0.08 || 1;
  const marks = alarms.filter((a) => a.raised_at >= xs[0] - step && a.raised_at <= xs.at(-1) + step);
  const holder = h("div.plot");
  box.append(holder);
  if (legend.length) box.append(h("ul.thresholds", { "aria-label": t("thresholds") }, legend));
  const options = {
    width: Math.max(280, holder.clientWidth || box.clientWidth || 600),
    height: 220,
    scales: { x: { time: true }, y: { range: [yRange[0] - pad, yRange[1] + pad] } },
    axes: [{ values: (_u, splits, _axis, _space, step) => splits.map((v) => timeLabel(v, step)) }, {}],
    series: [
      {},
      { label: "avg", stroke: "#1d3f73", width: 1.5, spanGaps: false },
      { label: "min", stroke: "rgba(29,63,115,0.35)", width: 1 },
      { label: "max", stroke: "rgba(29,63,115,0.35)", width: 1 },
    ],
    bands: [{ series: [3, 2], fill: "rgba(29,63,115,0.12)" }],
    legend: { show: false },
    hooks: {
      drawClear: [(u) => drawBands(u, bands)],
      draw: [(u) => drawAlarmMarks(u, marks)],
    },
  };
  const plot = new window.uPlot(options, data, holder);
  const resize = new ResizeObserver(() => {
    const width = Math.max(280, holder.clientWidth);
    if (width !== plot.width) plot.setSize({ width, height: 220 });
  });
  resize.observe(holder);
  const destroy = plot.destroy.bind(plot);
  plot.destroy = () => {
    resize.disconnect();
    destroy();
  };
  return plot;
}

/** "14:00" within a day ("07-01" at midnight), "07-01" for steps of a day or more. */
function timeLabel(epochSeconds, step) {
  const d = new Date(epochSeconds * 1000);
  const pad = (n) => String(n).padStart(2, "0");
  const day = `${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
  if (step >= 86400 || (d.getHours() === 0 && d.getMinutes() === 0)) return day;
  return `${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

function drawBands(u, bands) {
  const { ctx, bbox } = u;
  ctx.save();
  for (const [lower, upper, level] of bands) {
    const yLow = Math.min(bbox.top + bbox.height, u.valToPos(lower, "y", true));
    const yHigh = upper === null ? bbox.top : Math.max(bbox.top, u.valToPos(upper, "y", true));
    if (yLow <= bbox.top) continue;
    ctx.fillStyle = `${LEVEL_COLOURS[level]}33`;
    ctx.fillRect(bbox.left, yHigh, bbox.width, yLow - yHigh);
    ctx.strokeStyle = LEVEL_COLOURS[level];
    ctx.lineWidth = 1;
    ctx.beginPath();
    ctx.moveTo(bbox.left, yLow);
    ctx.lineTo(bbox.left + bbox.width, yLow);
    ctx.stroke();
  }
  ctx.restore();
}

function drawAlarmMarks(u, alarms) {
  const { ctx, bbox } = u;
  ctx.save();
  for (const alarm of alarms) {
    const x = u.valToPos(alarm.raised_at, "x", true);
    if (x < bbox.left || x > bbox.left + bbox.width) continue;
    ctx.strokeStyle = LEVEL_COLOURS[alarm.peak_level] ?? LEVEL_COLOURS[4];
    ctx.lineWidth = 2;
    ctx.setLineDash([4, 3]);
    ctx.beginPath();
    ctx.moveTo(x, bbox.top);
    ctx.lineTo(x, bbox.top + bbox.height);
    ctx.stroke();
  }
  ctx.restore();
}

function rosterPanel(siteId) {
  const panel = h("section.panel", { id: "roster" }, h("h3", {}, t("roster")));
  api
    .get(`/api/v1/sites/${encodeURIComponent(siteId)}/roster`)
    .then((persons) => {
      if (!persons.length) {
        panel.append(h("p.muted", {}, t("roster_empty")));
        return;
      }
      panel.append(
        h(
          "table",
          {},
          h("thead", {}, h("tr", {}, [t("tier_col"), t("name"), t("role"), t("mobile")].map((w) => h("th", { scope: "col" }, w)))),
          h(
            "tbody",
            {},
            persons.map((p) =>
              h("tr", {}, h("td", {}, t(`tier_${p.tier}`)), h("td", {}, p.name), h("td", {}, p.role), h("td", {}, p.mobile ?? "—")),
            ),
          ),
        ),
      );
    })
    .catch((error) => panel.append(h("p.muted", {}, t("error", { detail: error.message }))));
  return panel;
}

function renderRecentAlarms(panel, alarms) {
  const sorted = [...alarms].sort((a, b) => b.raised_at - a.raised_at).slice(0, 20);
  panel.replaceChildren(
    h("h3", {}, t("recent_alarms")),
    sorted.length
      ? h(
          "ul.recent",
          {},
          sorted.map((a) =>
            h("li", {}, levelBadge(a.peak_level), ` ${a.rule} · ${when(a.raised_at)} · ${a.active ? t("active") : t("ended")}`),
          ),
        )
      : h("p.muted", {}, t("no_alarms_period")),
  );
}
