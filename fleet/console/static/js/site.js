// One site: a chart per channel over 24 h / 7 d / 30 d (min-avg-max per bucket), the rule
// thresholds as coloured bands, alarm and actuation (siren/light on, off) marks on the time
// axis, a slope site's failure forecast and 1/v (slope.js), the roster, recent alarms and
// recent events (site_events.js).
// A threshold is drawn only against the values it applies to: a water level's on the
// channel itself, a rain window's on the rain of that window (computed here from the
// gauge's cumulative counter), never a window's threshold against the counter.

import { api, ApiError } from "./api.js";
import { h, when } from "./dom.js";
import { LEVEL_COLOURS, levelBadge, levelNumber } from "./fleet.js";
import { levelName, t } from "./i18n.js";
import { onLive } from "./live.js";
import { TIME_AXIS, fittedPlot } from "./plot_frame.js";
import { actuationMarks, renderEvents } from "./site_events.js";
import { hasSlopeRules, showSlope } from "./slope.js";

const PERIODS = { "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400 };
const BUCKETS = 720;
const BAND_ORDER = ["blue", "yellow", "orange", "red"];
const WINDOW_UNITS = { s: 1, min: 60, m: 60, h: 3600, d: 86400 };
//: The 1/v picture spans at least a failure forecast's default window.
const SLOPE_SPAN_S = 14 * 86400;
//: Actuation marks: a colour no level and no series uses.
export const ACTUATION_COLOUR = "#7b1fa2";

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
  const slopePanel = hasSlopeRules(site) ? h("section.panel", { id: "slope" }) : null;
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
      slopePanel,
      charts,
      h(
        "div.site-lower",
        {},
        rosterPanel(siteId),
        h("section.panel", { id: "site-alarms" }),
        h("section.panel", { id: "site-events" }),
      ),
    ),
  );

  // Every channel's readings are asked for at once, with the alarms: one round trip for
  // all of them, not one after another (a 30-day chart of 1-minute readings is the
  // slowest answer, and the page waits for it).
  const wanted = (
    await Promise.all(
      site.gateways.map(async (gateway) =>
        (await channelsOf(site, gateway)).map((channel) => {
          const series = api.get(
            `/api/v1/gateways/${encodeURIComponent(gateway.gateway_id)}/readings`,
            { channel: channel.channel, since, until, step: PERIODS[period] / BUCKETS },
          );
          series.catch(() => {}); // awaited below, in order; a refusal is thrown there
          return { channel, series };
        }),
      ),
    )
  ).flat();
  const plots = [];
  const slopeShown = slopePanel
    ? showSlope(slopePanel, siteId, until - Math.max(PERIODS[period], SLOPE_SPAN_S), until)
    : Promise.resolve([]);
  slopeShown.catch(() => {}); // awaited below
  const eventsAsked = api.get(`/api/v1/sites/${encodeURIComponent(siteId)}/events`, { since, until, limit: 500 });
  eventsAsked.catch(() => {}); // awaited below
  const alarms = (
    await Promise.all(
      site.gateways.map((g) =>
        api.get("/api/v1/alarms", { gateway_id: g.gateway_id, since, limit: 500 }),
      ),
    )
  ).flat();
  renderRecentAlarms(view.querySelector("#site-alarms"), alarms);
  const events = await eventsAsked;
  renderEvents(view.querySelector("#site-events"), events);
  const marks = { alarms, actuations: actuationMarks(events) };
  for (const { channel, series: asked } of wanted) {
    const rules = (site.rules ?? []).filter((r) => sameChannel(r.channel, channel.channel));
    const box = h("figure.chart", { dataset: { channel: channel.channel } });
    charts.append(box);
    let series;
    try {
      series = await asked;
    } catch (error) {
      // A channel the site file names but the gateway has not sent yet: this chart says
      // so, the others are still drawn.
      if (!(error instanceof ApiError && error.status === 404)) throw error;
      box.dataset.points = "0";
      box.append(h("figcaption", {}, title(channel)), h("p.muted", {}, t("no_readings_channel")));
      continue;
    }
    plots.push(channelChart(box, channel, series, rules, marks));
    for (const rule of rules) {
      for (const [name, thresholds] of Object.entries(rule.windows ?? {})) {
        const windowBox = h("figure.chart", { dataset: { channel: channel.channel, window: name } });
        charts.append(windowBox);
        plots.push(windowChart(windowBox, channel, series, rule, name, thresholds, marks));
      }
    }
  }
  let slopePlots = [];
  if (slopePanel) {
    try {
      slopePlots = await slopeShown;
    } catch (error) {
      slopePanel.replaceChildren(h("h3", {}, t("slope_forecast")), h("p.muted", {}, t("error", { detail: error.message })));
    }
  }
  // A gateway of the site reported (its health carries its newest forecast while a slope
  // rule is raised) or a level changed: the forecast and its picture are asked for again.
  let refreshing = null; // one at a time: a report during a refresh waits for the next
  const refreshSlope = (event) => {
    if (!slopePanel || event.site_id !== siteId || refreshing) return;
    refreshing = showSlope(slopePanel, siteId, until - Math.max(PERIODS[period], SLOPE_SPAN_S), Date.now() / 1000)
      .then((fresh) => {
        for (const plot of slopePlots) plot?.destroy();
        slopePlots = fresh;
      })
      .catch(() => {}) // the forecast shown stays; the next report tries again
      .finally(() => {
        refreshing = null;
      });
  };
  const stopHealth = onLive("health", refreshSlope);
  const stop = onLive("level", (event) => {
    if (event.site_id !== siteId) return;
    badge.replaceChildren(levelBadge(event.level));
    refreshSlope(event);
    // The recent events follow too (the charts keep their period as it was asked for).
    api
      .get(`/api/v1/sites/${encodeURIComponent(siteId)}/events`, { since, limit: 500 })
      .then((fresh) => renderEvents(view.querySelector("#site-events"), fresh))
      .catch(() => {});
  });
  return () => {
    stop();
    stopHealth();
    for (const plot of [...plots, ...slopePlots]) plot?.destroy();
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
          id: `period-${key}`,
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

function title(channel) {
  return `${channel.quantity || channel.channel}${channel.unit ? ` (${channel.unit})` : ""}`;
}

function hasLevels(values) {
  return values && BAND_ORDER.some((name) => typeof values[name] === "number");
}

function thresholdList(items) {
  const list = items.filter(([, values]) => hasLevels(values));
  if (!list.length) return null;
  return h(
    "ul.thresholds",
    { "aria-label": t("thresholds") },
    list.map(([label, values, sign = "≥"]) =>
      h(
        "li",
        {},
        `${label}: `,
        thresholdBands(values).map(([value, , level]) =>
          h(`span.level.level-${level}`, {}, `${levelName(level)} ${sign} ${value}`),
        ),
      ),
    ),
  );
}

/** The channel's own values, with the bands of the rules whose thresholds are on them. */
function channelChart(box, channel, series, rules, marks) {
  const buckets = series.buckets ?? [];
  const valueRules = rules.filter((r) => hasLevels(r.thresholds));
  const bands = valueRules.flatMap((r) => thresholdBands(r.thresholds));
  const horizons = rules
    .filter((r) => hasLevels(r.horizons_h))
    .map((r) => [`${r.id} (${r.kind}, ${t("horizon_h")})`, r.horizons_h, "≤"]);
  box.append(h("figcaption", {}, title(channel)));
  const data = [
    buckets.map((b) => b.start + series.step / 2),
    buckets.map((b) => b.avg),
    buckets.map((b) => b.min),
    buckets.map((b) => b.max),
  ];
  const legend = thresholdList([...valueRules.map((r) => [`${r.id} (${r.kind})`, r.thresholds]), ...horizons]);
  return plotInto(box, data, bands, marks, series, legend);
}

/** Rain over one of a rule's windows, from the gauge's counter, with that window's bands. */
function windowChart(box, channel, series, rule, name, thresholds, marks) {
  const buckets = series.buckets ?? [];
  const windowS = windowSeconds(name);
  box.append(h("figcaption", {}, `${rule.id}: ${t("window_rain", { window: name })}${channel.unit ? ` (${channel.unit})` : ""}`));
  const legend = thresholdList([[`${rule.id} (${rule.kind}, ${name})`, thresholds]]);
  if (!windowS || windowS < 2 * series.step) {
    box.dataset.bands = "0";
    box.append(h("p.muted", {}, t("window_too_short", { window: name })));
    if (legend) box.append(legend);
    return null;
  }
  const xs = buckets.map((b) => b.start + series.step / 2);
  const sums = windowSums(xs, buckets.map((b) => b.max), windowS);
  return plotInto(box, [xs, sums], thresholdBands(thresholds), marks, series, legend);
}

/** "1h" -> 3600; null when the name is not a duration. */
export function windowSeconds(name) {
  const match = /^(\d+(?:\.\d+)?)\s*(s|min|m|h|d)$/.exec(name);
  return match ? Number(match[1]) * WINDOW_UNITS[match[2]] : null;
}

/**
 * Rain in (x - window, x] at each x from a cumulative counter (null where unknown). A
 * counter that goes down was reset: its new value is what fell since.
 */
export function windowSums(xs, counter, windowS) {
  const prefix = [0];
  let last = null;
  for (const value of counter) {
    let increment = 0;
    if (value !== null && last !== null) increment = value >= last ? value - last : value;
    if (value !== null) last = value;
    prefix.push(prefix.at(-1) + increment);
  }
  let start = 0;
  return xs.map((x, i) => {
    while (xs[start] <= x - windowS) start += 1;
    // The first window lacks the rain before the chart begins: unknown, not zero.
    if (x - windowS < xs[0] || counter[i] === null) return null;
    return prefix[i + 1] - prefix[start];
  });
}

/**
 * uPlot into `box` over the whole period of `series` (since..until): data series 1 is the
 * value, 2 and 3 (if given) its min and max per bucket; `marks` the alarms and actuations.
 */
function plotInto(box, data, bands, marks, series, legend) {
  const values = data.slice(1).flat().filter((v) => v !== null && v !== undefined);
  box.dataset.bands = String(bands.length);
  box.dataset.points = String(data[1].filter((v) => v !== null).length);
  if (!values.length) {
    box.append(h("p.muted", {}, t("no_readings")));
    if (legend) box.append(legend);
    return null;
  }
  const yRange = [Math.min(...values), Math.max(...values)];
  for (const [lower] of bands) {
    yRange[0] = Math.min(yRange[0], lower);
    yRange[1] = Math.max(yRange[1], lower);
  }
  const pad = (yRange[1] - yRange[0]) * 0.08 || 1;
  const alarmMarks = marks.alarms.filter((a) => a.raised_at >= series.since && a.raised_at <= series.until);
  const switched = marks.actuations.filter((m) => m.t >= series.since && m.t <= series.until);
  box.dataset.actuations = String(switched.length);
  const holder = h("div.plot");
  box.append(holder);
  if (switched.length) box.append(h("p.muted.actuation-legend", {}, t("actuation_marks")));
  if (legend) box.append(legend);
  const lines = [{}, { label: "avg", stroke: "#1d3f73", width: 1.5 }];
  const options = {
    scales: {
      x: { time: true, range: [series.since, series.until] },
      y: { range: [yRange[0] - pad, yRange[1] + pad] },
    },
    axes: [TIME_AXIS, {}],
    series: lines,
    legend: { show: false },
    hooks: {
      drawClear: [(u) => drawBands(u, bands)],
      draw: [(u) => drawAlarmMarks(u, alarmMarks), (u) => drawActuationMarks(u, switched)],
    },
  };
  if (data.length === 4) {
    lines.push({ label: "min", stroke: "rgba(29,63,115,0.35)", width: 1 });
    lines.push({ label: "max", stroke: "rgba(29,63,115,0.35)", width: 1 });
    options.bands = [{ series: [3, 2], fill: "rgba(29,63,115,0.12)" }];
  }
  return fittedPlot(options, data, holder, 220, box);
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

/** ▲ at the top of the plot where sirens or lights went on, △ where all went off. */
function drawActuationMarks(u, marks) {
  const { ctx, bbox } = u;
  const size = 7 * (window.devicePixelRatio || 1);
  ctx.save();
  ctx.strokeStyle = ACTUATION_COLOUR;
  ctx.fillStyle = ACTUATION_COLOUR;
  ctx.lineWidth = 1.5;
  for (const mark of marks) {
    const x = u.valToPos(mark.t, "x", true);
    if (x < bbox.left || x > bbox.left + bbox.width) continue;
    ctx.beginPath();
    ctx.moveTo(x, bbox.top);
    ctx.lineTo(x - size, bbox.top + 1.6 * size);
    ctx.lineTo(x + size, bbox.top + 1.6 * size);
    ctx.closePath();
    if (mark.on) ctx.fill();
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
