// A site's recent events (GET /api/v1/sites/{id}/events): alarm rises and falls,
// acknowledgements, village calls and answers, sirens and lights switching, broadcasts,
// and what the county recorded, newest first. Levels are shown by name (levelBadge),
// never as a number; the fleet sends no contact, so none can be shown.

import { h, when } from "./dom.js";
import { levelBadge } from "./fleet.js";
import { t } from "./i18n.js";

const CALL_STATUSES = new Set(["sending", "sent", "failed"]);
// The gateway's phone calls (a ring wakes someone a text may not): their statuses' words.
const RING_STATUSES = new Map([
  ["rang", "call_rang"],
  ["ring failed", "call_ring_failed"],
]);
const VIAS = new Set(["phone", "sms", "radio", "in_person"]);

/** The word for a value the console knows, else the value itself. */
function known(values, prefix, value) {
  return values.has(value) ? t(`${prefix}${value}`) : value ?? "";
}

/**
 * Actuation marks for the time axis: [{t, on, level}] from the site's events (any order),
 * oldest first. `on` is true when some output (siren, light) is on after the event.
 */
export function actuationMarks(events) {
  return events
    .filter((e) => e.kind === "actuation")
    .map((e) => ({
      t: e.ts,
      on: Object.values(e.outputs ?? {}).some((pattern) => pattern !== null),
      level: e.level ?? 0,
    }))
    .sort((a, b) => a.t - b.t);
}

/** The outputs of an actuation in words: "siren: warble" or "all off". */
export function outputsText(outputs) {
  const on = Object.entries(outputs ?? {}).filter(([, pattern]) => pattern !== null);
  if (!on.length) return t("outputs_off");
  return on.map(([actuator, pattern]) => `${actuator}: ${pattern}`).join(t("list_sep"));
}

/** What one event says, without its time and level (those are shown beside it). */
export function eventText(e) {
  switch (e.kind) {
    case "alarm":
      return `${e.rule ?? ""} ${t(`change_${e.change ?? "rise"}`)}${e.words ? ` · ${e.words}` : ""}`;
    case "ack":
      return t("event_ack_gateway", { rule: e.rule ?? "", by: e.by ?? "" });
    case "village_call":
      if (RING_STATUSES.has(e.status)) {
        return t("event_village_ring", { person: e.person ?? "", status: t(RING_STATUSES.get(e.status)) });
      }
      return t("event_village_call", { person: e.person ?? "", status: known(CALL_STATUSES, "call_", e.status) });
    case "village_answer":
      return t("event_village_answer", { person: e.person ?? "", via: e.via ?? "" });
    case "actuation":
      return t("event_actuation", { outputs: outputsText(e.outputs) });
    case "broadcast":
      return t("event_broadcast", { clip: e.clip ?? "" });
    case "fleet_ack":
      return t("event_fleet_ack", { rule: e.rule ?? "", by: e.by ?? "" }) + (e.words ? ` · ${e.words}` : "");
    case "fleet_answer":
      return t("event_fleet_answer", { person: e.person ?? "", via: known(VIAS, "via_", e.via), by: e.by ?? "" });
    default:
      return e.kind;
  }
}

/** The panel: the newest `shown` events, each with its time and level by name. */
export function renderEvents(panel, events, shown = 30) {
  const newest = [...events].sort((a, b) => b.ts - a.ts).slice(0, shown);
  panel.replaceChildren(
    h("h3", {}, t("recent_events")),
    newest.length
      ? h(
          "ol.recent.events",
          { reversed: true },
          newest.map((e) =>
            h(
              "li",
              { dataset: { kind: e.kind } },
              h("time", { datetime: new Date(e.ts * 1000).toISOString() }, when(e.ts)),
              " ",
              e.level === null || e.level === undefined ? null : levelBadge(e.level),
              " ",
              h("span.event-kind", {}, t(`kind_${e.kind}`)),
              " ",
              eventText(e),
            ),
          ),
        )
      : h("p.muted", {}, t("no_events_period")),
  );
}
