// A slope site's failure forecast and its inverse-velocity picture, from
// GET /api/v1/sites/{id}/slope. The forecast is the gateway's, as of the level change it
// was reported with; this module never makes one of its own, and says plainly when there
// is none (not accelerating, too little record, nothing reported). 1/v is drawn only
// where the fleet found a positive velocity; the hours it left out are counted in words.

import { api } from "./api.js";
import { h, when } from "./dom.js";
import { LEVEL_COLOURS, levelBadge, levelNumber } from "./fleet.js";
import { levelName, t } from "./i18n.js";
import { TIME_AXIS, fittedPlot } from "./plot_frame.js";

//: Rule kinds whose forecast the page shows (as fleet/site_forecast.py).
export const SLOPE_KINDS = new Set(["failure_forecast", "inverse_velocity"]);
const HORIZON_ORDER = ["blue", "yellow", "orange", "red"];
//: A failure further than this after the chart's end is named, not drawn.
const MAX_AHEAD_S = 30 * 86400;

/** True when the site has a rule this module draws. */
export function hasSlopeRules(site) {
  return (site.rules ?? []).some((rule) => SLOPE_KINDS.has(rule.kind));
}

/**
 * [[start, end, level], ...] on the time axis: where each level holds before the predicted
 * failure, from its horizon to the next higher level's (the highest up to the failure),
 * earliest first. Empty without a failure time.
 */
export function horizonBands(failureT, horizons) {
  if (typeof failureT !== "number" || !Number.isFinite(failureT)) return [];
  const steps = HORIZON_ORDER.filter((name) => typeof horizons?.[name] === "number")
    .map((name) => [failureT - horizons[name] * 3600, levelNumber(name)])
    .sort((a, b) => a[0] - b[0]);
  return steps.map(([start, level], i) => [start, steps[i + 1]?.[0] ?? failureT, level]);
}

/** The y axis top: 1.2 x the 95th percentile, so that one near-still hour does not flatten the rest. */
export function inverseTop(values) {
  if (!values.length) return 1;
  const sorted = [...values].sort((a, b) => a - b);
  const p95 = sorted[Math.min(sorted.length - 1, Math.floor(0.95 * (sorted.length - 1)))];
  return p95 * 1.2 || 1;
}

function number(value, digits = 1) {
  return typeof value === "number" && Number.isFinite(value) ? value.toFixed(digits) : "—";
}

/** Shows the site's slope rules into `panel`; returns the charts to destroy. */
export async function showSlope(panel, siteId, since, until) {
  const answer = await api.get(`/api/v1/sites/${encodeURIComponent(siteId)}/slope`, { since, until });
  const plots = [];
  panel.replaceChildren(h("h3", {}, t("slope_forecast")));
  for (const rule of answer.rules) {
    const box = h("div.slope-rule", { dataset: { rule: rule.rule, forecastState: rule.forecast.state } });
    panel.append(box);
    box.append(forecastFacts(rule));
    plots.push(inverseChart(box, rule, answer.since, answer.until));
  }
  return plots;
}

function forecastFacts(rule) {
  const f = rule.forecast;
  const heading = h("p.forecast-state", {}, `${rule.rule}: `, t(`forecast_${f.state}`));
  if (f.state === "not_reported") return h("div.forecast", {}, heading, h("p.muted", {}, t("forecast_how")));
  const facts = [[t("forecast_as_of"), when(f.as_of)], [t("level"), levelBadge(f.level)]];
  if (f.state === "forecast") {
    const interval =
      f.failure_t_low === null && f.failure_t_high === null
        ? t("interval_unknown")
        : `${f.failure_t_low === null ? t("unbounded") : when(f.failure_t_low)} – ${
            f.failure_t_high === null ? t("unbounded") : when(f.failure_t_high)
          }`;
    facts.unshift(
      [t("failure_time"), h("strong", { id: `failure-${rule.rule}` }, when(f.failure_t))],
      [t("failure_interval"), interval],
      [t("lead_time"), t("lead_hours", { h: number(f.lead_h), now: number((f.failure_t - Date.now() / 1000) / 3600) })],
    );
    facts.push([t("alpha"), number(f.alpha, 2)], [t("evidence"), number(f.evidence, 0)]);
    facts.push([t("forecast_source"), h("span", { id: `source-${rule.rule}` }, t(`source_${f.source}`))]);
  }
  facts.push([t("velocity"), `${number(f.velocity_mm_day, 2)} ${rule.unit ?? "mm"}/${t("per_day")}`]);
  return h(
    "div.forecast",
    {},
    heading,
    h("dl.facts", {}, facts.map(([term, value]) => h("div", {}, h("dt", {}, term), h("dd", {}, value)))),
    f.words ? h("p.muted.forecast-words", {}, t("gateway_words", { words: f.words })) : null,
  );
}

function inverseChart(box, rule, since, until) {
  const iv = rule.inverse_velocity;
  const f = rule.forecast;
  const unit = rule.unit ?? "mm";
  const figure = h("figure.chart.iv-chart", {
    dataset: { rule: rule.rule, points: String(iv.points.length), state: f.state },
  });
  box.append(figure);
  figure.append(h("figcaption", {}, t("inverse_velocity_title", { unit })));
  const skipped = [];
  if (iv.not_moving) skipped.push(t("skipped_not_moving", { n: iv.not_moving }));
  if (iv.gaps) skipped.push(t("skipped_gaps", { n: iv.gaps }));
  const failureT = f.state === "forecast" ? f.failure_t : null;
  const drawnFailure = failureT !== null && failureT <= until + MAX_AHEAD_S;
  const bands = drawnFailure ? horizonBands(failureT, rule.horizons_h) : [];
  figure.dataset.bands = String(bands.length);
  const notes = h(
    "p.muted.iv-notes",
    {},
    iv.problem ?? t("iv_method", { hours: iv.hours }),
    skipped.length ? ` ${skipped.join(" ")}` : "",
    failureT !== null && !drawnFailure ? ` ${t("failure_beyond", { at: when(failureT) })}` : "",
  );
  if (!iv.points.length) {
    figure.append(h("p.muted", {}, t("no_inverse_velocity")), notes, horizonLegend(rule.horizons_h));
    return null;
  }
  const xs = iv.points.map((p) => p.t);
  const ys = iv.points.map((p) => p.inverse);
  const top = inverseTop(ys);
  const above = ys.filter((y) => y > top).length;
  if (above) notes.append(` ${t("points_above", { n: above })}`);
  const xEnd = drawnFailure ? Math.max(until, (f.failure_t_high ?? failureT) + 6 * 3600, failureT + 6 * 3600) : until;
  const holder = h("div.plot");
  figure.append(holder, notes, horizonLegend(rule.horizons_h));
  return fittedPlot(
    {
      scales: { x: { time: true, range: [since, xEnd] }, y: { range: [0, top] } },
      axes: [TIME_AXIS, {}],
      series: [
        {},
        {
          label: "1/v",
          stroke: "#1d3f73",
          fill: "#1d3f73",
          paths: () => null,
          points: { show: true, size: 5, stroke: "#1d3f73", fill: "#1d3f73" },
        },
      ],
      legend: { show: false },
      hooks: {
        drawClear: [(u) => drawTimeBands(u, bands)],
        draw: [(u) => drawFailure(u, f, drawnFailure)],
      },
    },
    [xs, ys],
    holder,
    240,
    figure,
  );
}

function horizonLegend(horizons) {
  const names = HORIZON_ORDER.filter((name) => typeof horizons?.[name] === "number");
  if (!names.length) return null;
  return h(
    "ul.thresholds",
    { "aria-label": t("horizon_h") },
    h(
      "li",
      {},
      `${t("horizon_h")}: `,
      names.map((name) => {
        const level = levelNumber(name);
        return h(`span.level.level-${level}`, {}, `${levelName(level)} ≤ ${horizons[name]} h`);
      }),
    ),
  );
}

function drawTimeBands(u, bands) {
  const { ctx, bbox } = u;
  ctx.save();
  for (const [start, end, level] of bands) {
    const x0 = Math.max(bbox.left, u.valToPos(start, "x", true));
    const x1 = Math.min(bbox.left + bbox.width, u.valToPos(end, "x", true));
    if (x1 <= x0) continue;
    ctx.fillStyle = `${LEVEL_COLOURS[level]}33`;
    ctx.fillRect(x0, bbox.top, x1 - x0, bbox.height);
  }
  ctx.restore();
}

function drawFailure(u, forecast, drawn) {
  if (!drawn) return;
  const { ctx, bbox } = u;
  const x = (t) => u.valToPos(t, "x", true);
  ctx.save();
  if (forecast.failure_t_low !== null || forecast.failure_t_high !== null) {
    // The 95 % interval as a bar along the time axis (open ends run to the plot's edge).
    const low = forecast.failure_t_low === null ? bbox.left : Math.max(bbox.left, x(forecast.failure_t_low));
    const high =
      forecast.failure_t_high === null ? bbox.left + bbox.width : Math.min(bbox.left + bbox.width, x(forecast.failure_t_high));
    ctx.fillStyle = "rgba(26,26,26,0.55)";
    ctx.fillRect(low, bbox.top + bbox.height - 8, Math.max(2, high - low), 8);
  }
  const at = x(forecast.failure_t);
  ctx.strokeStyle = "#1a1a1a";
  ctx.lineWidth = 2;
  ctx.beginPath();
  ctx.moveTo(at, bbox.top);
  ctx.lineTo(at, bbox.top + bbox.height);
  ctx.stroke();
  ctx.restore();
}
