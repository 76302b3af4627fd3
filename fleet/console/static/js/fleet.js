// What the pages share about the fleet: sites and their gateways, level colours and
// badges, and the 叫应 state of an alarm read from its escalation record.

import { api } from "./api.js";
import { h, when } from "./dom.js";
import { LEVEL_BY_NAME, levelName, t } from "./i18n.js";
import { stepWords } from "./step_words.js";

//: Fill colours of the levels (0 normal .. 4 red); text on them is chosen for contrast.
export const LEVEL_COLOURS = ["#3d7a45", "#1f5fbf", "#f2c300", "#f07800", "#d00000"];
const DARK_TEXT_LEVELS = new Set([2, 3]);

/** Sites by id and the site of each gateway, from GET /api/v1/sites. */
export class SiteIndex {
  constructor(sites) {
    this.sites = new Map();
    this.siteOfGateway = new Map();
    for (const site of sites) this.put(site);
  }

  put(site) {
    this.sites.set(site.site_id, site);
    for (const gw of site.gateways ?? []) this.siteOfGateway.set(gw.gateway_id, site.site_id);
  }

  /** The site of an alarm's gateway, or a stand-in naming the gateway. */
  siteFor(gatewayId) {
    const id = this.siteOfGateway.get(gatewayId);
    return (id && this.sites.get(id)) || { site_id: null, name: gatewayId, gateways: [] };
  }

  list() {
    return [...this.sites.values()];
  }
}

export async function loadSites() {
  return new SiteIndex(await api.get("/api/v1/sites"));
}

/** A level as the fleet sends it (number or name) as 0..4. */
export function levelNumber(level) {
  if (typeof level === "number") return level;
  return LEVEL_BY_NAME[level] ?? 0;
}

/** A coloured badge with the level's name ("红色预警（Ⅰ级）"), never the bare number. */
export function levelBadge(level) {
  const n = levelNumber(level);
  return h(
    `span.level.level-${n}`,
    { dataset: { level: String(n) } },
    levelName(n),
  );
}

export function levelTextColour(level) {
  return DARK_TEXT_LEVELS.has(level) ? "#1a1a1a" : "#ffffff";
}

/** Active alarms first by level (highest), then newest. */
export function byUrgency(a, b) {
  return b.level - a.level || b.raised_at - a.raised_at;
}

/** A span of seconds as "4 分" / "4 min", for countdowns. */
export function duration(seconds) {
  const s = Math.max(0, Math.round(seconds));
  if (s < 120) return t("seconds", { n: s });
  if (s < 7200) return t("minutes", { n: Math.round(s / 60) });
  return t("hours", { n: Math.round(s / 3600) });
}

/**
 * The 叫应 state of an alarm from its detail (GET /api/v1/alarms/{id}): the latest
 * escalation's tier, who was called, who answered, and when the next tier is called
 * (`nextTierAt`, epoch s, null when there is no next tier or the calling has ended).
 */
export function callState(detail) {
  const escalation = detail.escalation?.at(-1);
  if (!escalation) return null;
  // Each person once, with their latest call: "王建国（短信·已发送）".
  const latest = new Map();
  for (const call of escalation.calls) latest.set(call.person, call);
  const called = [...latest.values()].map((c) =>
    t("called_as", { person: personName(c), channel: word("channel", c.channel), status: word("call", c.status) }),
  );
  // An answer the operator recorded on the alarm counts too, after the calling ended.
  const answered = [
    ...new Set([
      ...escalation.record.filter((r) => r.kind === "answer").map(personName),
      ...(detail.receipts ?? []).map((r) => r.person),
    ]),
  ].filter(Boolean);
  let nextTierAt = null;
  if (escalation.ended_at === null) {
    // The policy of the escalation's own level: {tiers: [{tier, deadline_s}], ...}.
    const tiers = escalation.policy?.tiers ?? [];
    const index = tiers.findIndex((step) => step.tier === escalation.tier);
    if (index >= 0 && index < tiers.length - 1) {
      const moves = escalation.record.filter((r) => r.kind === "escalated");
      const since = moves.length ? moves.at(-1).at : escalation.started_at;
      nextTierAt = since + tiers[index].deadline_s;
    }
  }
  const last = escalation.record.at(-1);
  return {
    lastStep: last ? stepText(last) : null,
    tier: escalation.tier,
    called,
    answered,
    nextTierAt,
    endedAt: escalation.ended_at,
    endReason: escalation.end_reason === null ? null : stepWords(escalation.end_reason),
  };
}

/**
 * The latest step of the calling in the page's language: a call by whom, on what and how
 * it went (with the channel's own words when it failed), else the fleet's words.
 */
function stepText(step) {
  const kind = step.kind ?? "";
  if (kind.startsWith("call_") && step.person) {
    const status = kind.slice("call_".length);
    const call = t("called_as", { person: personName(step), channel: word("channel", step.channel), status: word("call", status) });
    const why = status === "failed" && step.detail ? ` · ${step.detail}` : "";
    return `${when(step.at)} ${call}${why}`;
  }
  return step.detail ? `${when(step.at)} ${stepWords(step.detail)}` : null;
}

/**
 * A called or answering person's name: the fleet labels a roster person "李梅 (village)";
 * the tier is shown by its own word, so the English tag is left off.
 */
function personName(step) {
  const tag = step.tier ? ` (${step.tier})` : null;
  const person = step.person ?? "";
  return tag && person.endsWith(tag) ? person.slice(0, -tag.length) : person;
}

/** The word for a known value (`call_sent`, `channel_sms`), else the value itself. */
function word(prefix, value) {
  const key = `${prefix}_${value}`;
  const text = t(key);
  return text === key ? value : text;
}

/** The element showing a call state; countdowns carry data-deadline for the ticker. */
export function callStateView(state) {
  if (!state) return h("p.calls.muted", {}, t("no_escalation"));
  const rows = [
    h("div", {}, h("dt", {}, t("tier")), h("dd", {}, t(`tier_${state.tier}`))),
    h("div", {}, h("dt", {}, t("called")), h("dd", {}, state.called.join(t("list_sep")) || t("none"))),
    h(
      "div",
      {},
      h("dt", {}, t("answered")),
      h(
        "dd",
        { class: state.answered.length ? "ok" : "warn" },
        state.answered.join(t("list_sep")) || t("not_answered"),
      ),
    ),
  ];
  let footer = null;
  if (state.endedAt !== null && state.endedAt !== undefined) {
    footer = h("p.calls-end", {}, t("escalation_ended", { why: state.endReason ?? "" }));
  } else if (state.nextTierAt !== null) {
    footer = h("p.countdown", { dataset: { deadline: String(state.nextTierAt) } });
    tickCountdown(footer);
  }
  const step = state.lastStep ? h("p.calls-step", {}, `${t("last_step")}: ${state.lastStep}`) : null;
  return h("div.calls", {}, h("dl", {}, rows), footer, step);
}

export function tickCountdown(el) {
  const left = Number(el.dataset.deadline) - Date.now() / 1000;
  el.textContent = left > 0 ? t("next_tier_in", { t: duration(left) }) : t("next_tier_due");
}

/** Update every countdown on the page once a second. */
export function startCountdownTicker() {
  setInterval(() => {
    for (const el of document.querySelectorAll("[data-deadline]")) tickCountdown(el);
  }, 1000);
}

//: A gateway's clock within this of the fleet's is in step (the figure is coarse: the
//: fleet's last sight of the gateway may come up to a health interval after its health).
export const CLOCK_TOLERANCE_S = 300;

/**
 * A gateway's clock as the fleet tells it (`clock_offset_s`, or `health_at - last_seen`
 * from a live health event): {state: in_step | ahead | behind | unknown, text}.
 */
export function clockState(gateway) {
  // health_at and last_seen first: a live health event updates those, not the offset.
  const { health_at: healthAt, last_seen: lastSeen } = gateway ?? {};
  const offset =
    typeof healthAt === "number" && typeof lastSeen === "number" ? healthAt - lastSeen : gateway?.clock_offset_s;
  if (typeof offset !== "number" || !Number.isFinite(offset)) return { state: "unknown", text: t("clock_unknown") };
  if (Math.abs(offset) <= CLOCK_TOLERANCE_S) return { state: "in_step", text: t("clock_in_step") };
  const state = offset > 0 ? "ahead" : "behind";
  return { state, text: t(`clock_${state}`, { t: duration(Math.abs(offset)) }) };
}

/** Total fault count of a gateway, whatever shape `faults` has (count, map or list). */
export function faultCount(faults) {
  if (faults === null || faults === undefined) return 0;
  if (typeof faults === "number") return faults;
  if (Array.isArray(faults)) return faults.length;
  return Object.values(faults).reduce((sum, n) => sum + (Number(n) || 0), 0);
}
