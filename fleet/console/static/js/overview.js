// The overview (一张图): every site on the county map coloured by its level, the active
// alarms with their 叫应 state, and the gateway-health strip, all kept live by the stream.
// A rising level from the stream is drawn at once; a falling one is drawn only once the
// fleet confirms the site's level, so no alarm disappears from the map on a partial view.

import { api } from "./api.js";
import { debounce, h, when } from "./dom.js";
import {
  LEVEL_COLOURS,
  byUrgency,
  callState,
  callStateView,
  clockState,
  faultCount,
  levelBadge,
  levelNumber,
  loadSites,
} from "./fleet.js";
import { levelName, t } from "./i18n.js";
import { onLive } from "./live.js";

const MAX_DETAILS = 50;
const MAX_STRIP = 30;
const LOW_BATTERY_V = 11.5;
//: A burst of health events asks the fleet for backlog, battery and faults at most this often.
const HEALTH_REFRESH_MS = 10000;

export async function showOverview(view) {
  const mapBox = h("div.map", { id: "map", role: "region", "aria-label": t("map") });
  const mapNote = h("p.map-note", { hidden: true });
  const alarmList = h("ol.alarm-list", { id: "active-alarms", "aria-live": "polite" });
  const strip = h("div.strip", { id: "health-strip" });
  const jump = h("select", { id: "site-jump", name: "site", "aria-label": t("open_site") });
  // A link, not a button: it changes nothing (a viewer sees no button anywhere).
  const jumpOpen = h("a.button-link", { id: "site-jump-open", href: "#/overview", "aria-disabled": "true" }, t("open"));
  const jumpForm = h("form.site-jump", {}, jump, jumpOpen);
  view.replaceChildren(
    h(
      "div.overview",
      {},
      // In reading order on a phone (one column) and for the keyboard: health, the alarms,
      // then the map; the wide layout puts the map left of the alarms.
      h("section.panel.health-panel", {}, h("h2", {}, t("health")), strip),
      h("section.panel.alarms-panel", {}, h("h2", {}, t("active_alarms")), alarmList),
      h("section.panel.map-panel", {}, h("h2", {}, t("map")), mapBox, mapNote, jumpForm),
    ),
  );

  const [index, county] = await Promise.all([loadSites(), api.get("/console/map")]);
  const map = new SiteMap(mapBox, index);
  await map.draw(county, mapNote);
  fillJump(jumpForm, jump, jumpOpen, index);
  renderStrip(strip, index);
  const details = new Map();
  await renderAlarms(alarmList, index, details);

  // Alarms named by level events since the last render: their 叫应 state is asked again.
  let stale = new Set();
  const renderNow = debounce(() => {
    const named = stale;
    stale = new Set();
    renderAlarms(alarmList, index, details, named);
  }, 250);
  const refreshAlarms = (alarmId) => {
    if (alarmId) stale.add(Number(alarmId));
    renderNow();
  };
  const redrawStrip = debounce(() => renderStrip(strip, index), 500);
  // A health event says a gateway's state, last sight and clock; its backlog, battery and
  // faults are asked for again (one request for a burst of events).
  let asking = null;
  const askHealth = () => {
    asking ??= new Promise((resolve) => setTimeout(resolve, HEALTH_REFRESH_MS))
      .then(() => loadSites())
      .then((fresh) => {
        for (const site of fresh.list()) {
          const known = index.sites.get(site.site_id);
          if (known) known.gateways = site.gateways;
        }
        renderStrip(strip, index);
      })
      .catch(() => {}) // the next health event asks again
      .finally(() => {
        asking = null;
      });
  };
  const unsubscribe = [
    onLive("level", async (event) => {
      const level = levelNumber(event.level);
      const site = index.sites.get(event.site_id);
      refreshAlarms(event.alarm_id);
      if (!site) {
        // A site enrolled since the page loaded: fetch it and put it on the map.
        const fresh = await api.get(`/api/v1/sites/${encodeURIComponent(event.site_id)}`);
        index.put(fresh);
        if (typeof fresh.lat === "number" && typeof fresh.lon === "number") map.addMarker(fresh);
        return;
      }
      if (!map.markers.has(site.site_id)) {
        // A site without coordinates when the page loaded may have them now (its
        // gateway's first upload brings its site file): ask, and put it on the map.
        const fresh = await api.get(`/api/v1/sites/${encodeURIComponent(event.site_id)}`);
        const placed = typeof fresh.lat === "number" && typeof fresh.lon === "number";
        if (placed && !map.markers.has(site.site_id)) {
          Object.assign(site, { lat: fresh.lat, lon: fresh.lon, level: levelNumber(fresh.level) });
          map.addMarker(site);
        }
        return;
      }
      site.events = (site.events ?? 0) + 1;
      if (level > site.level) map.setLevel(site, level);
      else if (level < site.level) await confirmLevel(map, site);
    }),
    onLive("health", (event) => {
      const site = index.sites.get(event.site_id);
      const gateway = site?.gateways.find((g) => g.gateway_id === event.gateway_id);
      if (gateway) Object.assign(gateway, event);
      redrawStrip();
      askHealth();
    }),
    onLive("escalation", (event) => {
      const item = alarmList.querySelector(`[data-alarm-id="${Number(event.alarm_id)}"]`);
      if (item) refreshCalls(item, Number(event.alarm_id), details);
      else refreshAlarms();
    }),
    onLive("resync", async () => {
      const fresh = await loadSites();
      for (const site of fresh.list()) {
        const known = index.sites.get(site.site_id);
        if (!known) {
          index.put(site);
          if (typeof site.lat === "number" && typeof site.lon === "number") map.addMarker(site);
          continue;
        }
        known.events = (known.events ?? 0) + 1; // an answer in flight predates this one
        map.setLevel(known, levelNumber(site.level));
        known.gateways = site.gateways;
        for (const gw of site.gateways) index.siteOfGateway.set(gw.gateway_id, site.site_id);
      }
      renderStrip(strip, index);
      details.clear(); // events were missed: every 叫应 state may have changed
      refreshAlarms();
    }),
  ];
  return () => {
    for (const stop of unsubscribe) stop();
    map.remove();
  };
}

/**
 * Draw the site's level as the fleet has it now. An answer that raced a newer event for
 * the site is not drawn (it may predate that event); the level is asked for again.
 */
async function confirmLevel(map, site) {
  for (;;) {
    const seen = site.events;
    const fresh = await api.get(`/api/v1/sites/${encodeURIComponent(site.site_id)}`);
    if (seen === site.events) {
      map.setLevel(site, levelNumber(fresh.level));
      return;
    }
  }
}

class SiteMap {
  constructor(box, index) {
    this.index = index;
    this.markers = new Map();
    this.map = window.L.map(box, { zoomSnap: 0.25, attributionControl: false });
    // The map takes what the strip and the note leave, which change live: Leaflet is told.
    this.resize = new ResizeObserver(() => this.map.invalidateSize());
    this.resize.observe(box);
  }

  async draw(county, note) {
    const L = window.L;
    if (county.tile_url) {
      L.tileLayer(county.tile_url, { attribution: county.tile_attribution, maxZoom: 18 }).addTo(
        this.map,
      );
      L.control.attribution({ prefix: false }).addTo(this.map);
    }
    const problems = [];
    if (county.problem) problems.push(t("map_problem") + county.problem);
    let bounds = null;
    try {
      const boundary = await (await fetch(county.boundary_url)).json();
      const layer = L.geoJSON(boundary, {
        style: (feature) =>
          feature.properties?.kind === "river"
            ? { color: "#5b8fd6", weight: 2, fill: false }
            : { color: "#4a4a4a", weight: 2, fillColor: "#eef1ea", fillOpacity: 1 },
        interactive: false,
      }).addTo(this.map);
      bounds = layer.getBounds();
    } catch (error) {
      problems.push(t("map_problem") + error.message);
    }
    const placed = this.index.list().filter((s) => typeof s.lat === "number" && typeof s.lon === "number");
    for (const site of placed) {
      const here = L.latLng(site.lat, site.lon);
      bounds = bounds ? bounds.extend(here) : L.latLngBounds(here, here);
    }
    // The view comes first: Leaflet draws a vector marker only on a map that has one.
    if (bounds?.isValid()) this.map.fitBounds(bounds, { padding: [12, 12] });
    else this.map.setView([35, 105], 4);
    placed.sort((a, b) => levelNumber(a.level) - levelNumber(b.level));
    for (const site of placed) this.addMarker(site);
    const unplaced = this.index.list().length - placed.length;
    if (unplaced) problems.push(t("no_position", { n: unplaced }));
    note.hidden = problems.length === 0;
    note.textContent = problems.join(" ");
  }

  addMarker(site) {
    const L = window.L;
    const level = levelNumber(site.level);
    const marker = L.circleMarker([site.lat, site.lon], markerStyle(level)).addTo(this.map);
    const path = marker.getElement();
    path.classList.add("site-marker");
    path.dataset.siteId = site.site_id;
    path.dataset.level = String(level);
    path.setAttribute("role", "img");
    marker.bindTooltip(() => h("span", {}, `${site.name} · ${levelName(site.level)}`));
    const open = () => {
      window.location.hash = `#/site/${encodeURIComponent(site.site_id)}`;
    };
    marker.on("click", open);
    // An alarmed site can be reached with Tab and opened with Enter; the list under the
    // map opens any site (a thousand tab stops would bury the alarm list).
    path.addEventListener("keydown", (event) => {
      if (event.key === "Enter" || event.key === " ") open();
    });
    this.markers.set(site.site_id, marker);
    this.label(site);
  }

  label(site) {
    const path = this.markers.get(site.site_id)?.getElement();
    if (!path) return;
    path.setAttribute("aria-label", `${site.name}: ${levelName(site.level)}`);
    if (levelNumber(site.level) > 0) path.setAttribute("tabindex", "0");
    else path.removeAttribute("tabindex");
  }

  setLevel(site, level) {
    site.level = level;
    const marker = this.markers.get(site.site_id);
    if (!marker) return;
    marker.setStyle(markerStyle(level));
    const path = marker.getElement();
    path.dataset.level = String(level);
    this.label(site);
    if (level > 0) marker.bringToFront();
  }

  remove() {
    this.resize.disconnect();
    this.map.remove();
  }
}

function markerStyle(level) {
  return {
    radius: level > 0 ? 9 : 6,
    color: "#1a1a1a",
    weight: 1.5,
    fillColor: LEVEL_COLOURS[level] ?? LEVEL_COLOURS[0],
    fillOpacity: 0.95,
  };
}

/**
 * The list of every site under the map. Choosing only selects (arrow keys walk the list
 * without leaving the page); the link beside it, or Enter, opens the site.
 */
function fillJump(form, select, link, index) {
  const sites = index.list().sort((a, b) => b.level - a.level || a.name.localeCompare(b.name));
  select.replaceChildren(
    h("option", { value: "" }, `${t("open_site")}…`),
    ...sites.map((s) => h("option", { value: s.site_id }, `${s.name} · ${levelName(s.level)}`)),
  );
  const target = () => (select.value ? `#/site/${encodeURIComponent(select.value)}` : null);
  select.addEventListener("change", () => {
    link.href = target() ?? "#/overview";
    if (select.value) link.removeAttribute("aria-disabled");
    else link.setAttribute("aria-disabled", "true");
  });
  form.addEventListener("submit", (event) => event.preventDefault());
  select.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && target()) window.location.hash = target();
  });
}

/**
 * The active alarms, most urgent first. The 叫应 state of each is kept between renders:
 * only alarms not seen before and those in `stale` (named by an event) are asked for
 * again, all in one request, so neither a first load nor a burst of level changes costs
 * a request per alarm.
 */
async function renderAlarms(list, index, details, stale = new Set()) {
  const alarms = (await api.get("/api/v1/alarms", { active: true, limit: 500 })).sort(byUrgency);
  if (!alarms.length) {
    list.replaceChildren(h("li.empty", {}, t("no_active_alarms")));
    details.clear();
    return;
  }
  const items = alarms.map((alarm) => alarmItem(alarm, index));
  // The keyboard keeps its place: a focused site link is focused again in its new item.
  const focused = list.contains(document.activeElement)
    ? document.activeElement.closest("[data-alarm-id]")?.dataset.alarmId
    : null;
  list.replaceChildren(...items);
  if (focused) list.querySelector(`[data-alarm-id="${Number(focused)}"] a`)?.focus();
  const active = new Set(alarms.map((a) => a.id));
  for (const id of details.keys()) if (!active.has(id)) details.delete(id);
  const shown = items.slice(0, MAX_DETAILS).map((item, i) => [item, alarms[i].id]);
  const missing = shown.filter(([, id]) => !details.has(id) || stale.has(id)).map(([, id]) => id);
  let failure = null;
  if (missing.length) {
    try {
      for (const detail of await api.get("/api/v1/alarms/details", { ids: missing.join(",") })) {
        details.set(detail.id, detail);
      }
    } catch (error) {
      failure = error;
    }
  }
  for (const [item, id] of shown) {
    if (details.has(id) && !(failure && missing.includes(id))) showCalls(item, details.get(id));
    else if (failure) showCallsError(item, failure);
  }
}

function showCallsError(item, error) {
  item.querySelector(".alarm-calls").replaceChildren(h("p.muted", {}, t("error", { detail: error.message })));
}

function showCalls(item, detail) {
  item.querySelector(".alarm-calls").replaceChildren(callStateView(callState(detail)));
}

function alarmItem(alarm, index) {
  const site = index.siteFor(alarm.gateway_id);
  const siteLink = site.site_id
    ? h("a", { href: `#/site/${encodeURIComponent(site.site_id)}` }, site.name)
    : h("span", {}, site.name);
  const ack = alarm.acknowledged_at
    ? h("span.ack.ok", {}, t("acknowledged_by", { who: alarm.acknowledged_by ?? "", at: when(alarm.acknowledged_at) }))
    : h("span.ack.warn", {}, t("not_acknowledged"));
  return h(
    "li.alarm",
    { dataset: { alarmId: String(alarm.id), level: String(alarm.level) } },
    h("div.alarm-head", {}, levelBadge(alarm.level), siteLink),
    h("div.alarm-meta", {}, `${t("rule")}: ${alarm.rule} · ${when(alarm.raised_at)} · `, ack),
    h("div.alarm-calls"),
  );
}

async function refreshCalls(item, alarmId, details) {
  try {
    const detail = await api.get(`/api/v1/alarms/${alarmId}`);
    details.set(alarmId, detail);
    showCalls(item, detail);
  } catch (error) {
    showCallsError(item, error);
  }
}

function gatewayProblems(gateway) {
  const problems = [];
  if (gateway.state !== "online") problems.push(t(gateway.state === "never_seen" ? "never_seen" : "offline"));
  const backlog = (gateway.backlog_readings ?? 0) + (gateway.backlog_events ?? 0);
  if (backlog > 0) problems.push(`${t("backlog")} ${backlog}`);
  if (typeof gateway.battery_v === "number" && gateway.battery_v < LOW_BATTERY_V) {
    problems.push(`${t("battery")} ${gateway.battery_v.toFixed(1)} ${t("unit_v")}`);
  }
  const faults = faultCount(gateway.faults);
  if (faults > 0) problems.push(`${t("faults")} ${faults}`);
  const clock = clockState(gateway);
  if (clock.state === "ahead" || clock.state === "behind") problems.push(`${t("clock")} ${clock.text}`);
  return problems;
}

function renderStrip(strip, index) {
  const counts = { online: 0, offline: 0, never_seen: 0 };
  const chips = [];
  for (const site of index.list()) {
    for (const gateway of site.gateways ?? []) {
      const state = gateway.state in counts ? gateway.state : "offline";
      counts[state] += 1;
      const problems = gatewayProblems(gateway);
      if (problems.length) {
        chips.push(
          h(
            `li.chip.${state}`,
            { dataset: { gatewayId: gateway.gateway_id } },
            h("a", { href: `#/site/${encodeURIComponent(site.site_id)}` }, site.name),
            ` ${problems.join(" · ")}`,
          ),
        );
      }
    }
  }
  const summary = h(
    "p.strip-counts",
    {},
    h("span.count.online", {}, `${t("online")} ${counts.online}`),
    h("span.count.offline", {}, `${t("offline")} ${counts.offline}`),
    counts.never_seen ? h("span.count.never", {}, `${t("never_seen")} ${counts.never_seen}`) : null,
  );
  const shown = chips.slice(0, MAX_STRIP);
  const rest = chips.length - shown.length;
  strip.replaceChildren(
    summary,
    chips.length
      ? h(
          "ul.chips",
          {},
          shown,
          rest > 0 ? h("li.chip.more", {}, h("a", { href: "#/gateways" }, t("and_more", { n: rest }))) : null,
        )
      : h("p.ok", {}, t("all_healthy")),
  );
}
