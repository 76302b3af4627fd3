// The console's own logic, run by Node on the very modules the browser loads
// (tests/test_console_logic.py runs it): level names, threshold bands, rain over a window
// from a cumulative counter, and the 叫应 state of an alarm. Exits non-zero on a failure.

import assert from "node:assert/strict";

// The browser globals these modules touch when they load or switch language.
const stored = new Map();
globalThis.window = {
  localStorage: { getItem: (k) => stored.get(k) ?? null, setItem: (k, v) => stored.set(k, v) },
};
globalThis.document = { documentElement: {} };

const static_ = new URL("../fleet/console/static/js/", import.meta.url);
const i18n = await import(new URL("i18n.js", static_));
const fleet = await import(new URL("fleet.js", static_));
const site = await import(new URL("site.js", static_));
const slope = await import(new URL("slope.js", static_));
const siteEvents = await import(new URL("site_events.js", static_));
const steps = await import(new URL("step_words.js", static_));

// Levels: never a bare number; Chinese first, English remembered.
assert.equal(i18n.levelName(4), "红色预警（Ⅰ级）");
assert.equal(i18n.levelName("blue"), "蓝色预警（Ⅳ级）");
assert.equal(i18n.levelName(0), "正常");
assert.equal(i18n.levelName(7), "级别未知");
i18n.setLang("en");
assert.equal(i18n.levelName(4), "Red warning (level I)");
assert.equal(stored.get("hazardwatch.lang"), "en");
assert.equal(globalThis.document.documentElement.lang, "en");
i18n.setLang("zh");

// Bands run from each threshold up to the next; the highest has no top.
assert.deepEqual(site.thresholdBands({ red: 30, blue: 5, yellow: 12 }), [
  [5, 12, 1],
  [12, 30, 2],
  [30, null, 4],
]);
assert.deepEqual(site.thresholdBands({}), []);

// Windows by name.
assert.equal(site.windowSeconds("1h"), 3600);
assert.equal(site.windowSeconds("10min"), 600);
assert.equal(site.windowSeconds("24h"), 86400);
assert.equal(site.windowSeconds("soon"), null);

// Rain over the last hour from a counter read every 10 minutes, 1 mm each time.
const xs = Array.from({ length: 19 }, (_, i) => i * 600);
const counter = xs.map((_, i) => 100 + i);
let sums = site.windowSums(xs, counter, 3600);
assert.deepEqual(sums.slice(0, 6), [null, null, null, null, null, null]); // unknown, not zero
assert.deepEqual(sums.slice(6), Array(13).fill(6));
// The counter restarts from 0 after the 10th reading (its next reading, 1 mm, is the rain
// since): the hour's rain keeps counting across the reset.
const reset = counter.map((v, i) => (i < 10 ? v : i - 9));
sums = site.windowSums(xs, reset, 3600);
assert.equal(sums[12], 6);
// A missing reading (null) is unknown at that time; the next one catches up.
const gap = counter.map((v, i) => (i === 8 ? null : v));
sums = site.windowSums(xs, gap, 3600);
assert.equal(sums[8], null);
assert.equal(sums[9], 6);

// 叫应: the tier, who was called, who answered, when the next tier is called.
// The escalation's policy is its level's alone (EscalationOut.policy, LevelPolicy.to_json):
// test_console_browser.py draws the countdown from a real fleet's answer of this shape.
const policy = {
  tiers: [
    { tier: "village", deadline_s: 300 },
    { tier: "township", deadline_s: 600 },
    { tier: "county", deadline_s: 900 },
  ],
  repeat_s: 120,
  required_tier: "village",
};
const escalation = (overrides) => ({
  level: 4,
  level_name: "red",
  started_at: 1000,
  tier: "village",
  ended_at: null,
  end_reason: null,
  policy,
  calls: [
    { person: "王建国", channel: "sms", status: "failed" },
    { person: "王建国", channel: "sms", status: "sent" },
  ],
  record: [{ at: 1000, kind: "started", tier: "village", person: null, detail: "level 4" }],
  ...overrides,
});
let state = fleet.callState({ escalation: [escalation({})], receipts: [] });
assert.equal(state.tier, "village");
assert.deepEqual(state.called, ["王建国（短信·已发送）"]); // each person once, latest call
assert.deepEqual(state.answered, []);
assert.equal(state.nextTierAt, 1300);

state = fleet.callState({
  escalation: [
    escalation({
      tier: "township",
      record: [
        { at: 1000, kind: "started", tier: "village" },
        { at: 1300, kind: "escalated", tier: "township", detail: "no answer" },
        { at: 1400, kind: "answer", tier: "village", person: "李秀英" },
      ],
    }),
  ],
  receipts: [{ person: "张伟" }],
});
assert.equal(state.nextTierAt, 1900); // 600 s after the move to the township tier
assert.deepEqual(state.answered, ["李秀英", "张伟"]); // answers and recorded receipts

// The fleet labels a roster person with their tier ("李梅 (village)"): the name is shown.
state = fleet.callState({
  escalation: [
    escalation({
      calls: [{ person: "李梅 (village)", tier: "village", channel: "webhook", status: "sent" }],
      record: [
        { at: 1000, kind: "started", tier: "village" },
        { at: 1100, kind: "answer", tier: "village", person: "李梅 (village)" },
      ],
    }),
  ],
  receipts: [],
});
assert.deepEqual(state.called, ["李梅（接口·已发送）"]);
assert.deepEqual(state.answered, ["李梅"]);
state = fleet.callState({
  escalation: [
    escalation({
      record: [
        { at: 1000, kind: "started", tier: "village", detail: "level 4" },
        { at: 1001, kind: "call_sent", tier: "village", person: "李梅 (village)", channel: "webhook",
          detail: "webhook http://127.0.0.1/*** answered 200" },
      ],
    }),
  ],
  receipts: [],
});
assert.ok(state.lastStep.endsWith(" 李梅（接口·已发送）"), state.lastStep); // the robot's words left out
state = fleet.callState({
  escalation: [escalation({ record: [{ at: 1000, kind: "started", tier: "village", detail: "level 4" }] })],
  receipts: [],
});
assert.ok(state.lastStep.endsWith(" 红色预警（Ⅰ级）"), state.lastStep); // never "level 4"

state = fleet.callState({ escalation: [escalation({ tier: "county" })], receipts: [] });
assert.equal(state.nextTierAt, null); // the last tier: nobody above to call
state = fleet.callState({
  escalation: [escalation({ ended_at: 1200, end_reason: "answered" })],
  receipts: [],
});
assert.equal(state.nextTierAt, null);
assert.equal(state.endReason, "answered");
assert.equal(fleet.callState({ escalation: [], receipts: [] }), null);

// Fault counts in whatever shape health carries them.
assert.equal(fleet.faultCount({ rain: 2, creek: 1 }), 3);
assert.equal(fleet.faultCount(4), 4);
assert.equal(fleet.faultCount(null), 0);

// A failure forecast's level horizons on the time axis: each level from its horizon before
// the failure to the next level's, red up to the failure; nothing without a failure time.
const failure = 1_000_000;
assert.deepEqual(slope.horizonBands(failure, { red: 36, yellow: 168, orange: 96 }), [
  [failure - 168 * 3600, failure - 96 * 3600, 2],
  [failure - 96 * 3600, failure - 36 * 3600, 3],
  [failure - 36 * 3600, failure, 4],
]);
assert.deepEqual(slope.horizonBands(null, { red: 36 }), []);
assert.deepEqual(slope.horizonBands(failure, {}), []);
// The 1/v axis: one near-still hour (1/v = 1000) does not flatten the other nineteen.
const inverses = [...Array.from({ length: 19 }, (_, i) => 0.5 + i / 100), 1000];
assert.ok(Math.abs(slope.inverseTop(inverses) - 1.2 * 0.68) < 1e-9);
assert.equal(slope.inverseTop([]), 1);
assert.ok(slope.hasSlopeRules({ rules: [{ kind: "water_level" }, { kind: "failure_forecast" }] }));
assert.ok(!slope.hasSlopeRules({ rules: [{ kind: "displacement_velocity" }] }));

// Actuation marks: on while some output is on, off when all are; oldest first.
const switches = [
  { kind: "actuation", ts: 30, level: 0, outputs: { siren: null, light: null } },
  { kind: "alarm", ts: 15, level: 4 },
  { kind: "actuation", ts: 10, level: 4, outputs: { siren: "siren", light: null } },
];
assert.deepEqual(siteEvents.actuationMarks(switches), [
  { t: 10, on: true, level: 4 },
  { t: 30, on: false, level: 0 },
]);
assert.equal(siteEvents.outputsText({ siren: "warble", light: null }), "siren: warble");
assert.equal(siteEvents.outputsText({ siren: null }), "全部关闭");
assert.equal(
  siteEvents.eventText({ kind: "alarm", rule: "creek", change: "fall", words: "level 805" }),
  "creek 回落 · level 805",
);
assert.equal(
  siteEvents.eventText({ kind: "village_call", person: "王建国", status: "failed" }),
  "短信呼叫 王建国：失败",
);
// The gateway's phone rings are told as rings, in words, never the raw status "rang".
assert.equal(
  siteEvents.eventText({ kind: "village_call", person: "王建国", status: "rang" }),
  "电话振铃 王建国：已振铃",
);
assert.equal(
  siteEvents.eventText({ kind: "village_call", person: "王建国", status: "ring failed" }),
  "电话振铃 王建国：振铃失败",
);
i18n.setLang("en");
assert.equal(
  siteEvents.eventText({ kind: "village_call", person: "Wang", status: "rang" }),
  "phoned Wang: rang",
);
i18n.setLang("zh");
assert.equal(
  siteEvents.eventText({ kind: "fleet_answer", person: "李四", via: "phone", by: "duty" }),
  "李四 应答（电话），duty 登记",
);

// A gateway's clock: in step within five minutes of the fleet's, else ahead or behind by
// how much; unknown without health. A live health event's times win over the stored offset.
assert.deepEqual(fleet.clockState({ clock_offset_s: -42 }), { state: "in_step", text: "正常" });
assert.deepEqual(fleet.clockState({ clock_offset_s: -3600 }), { state: "behind", text: "慢 60 分" });
assert.deepEqual(fleet.clockState({ clock_offset_s: 2 * 86400 }), { state: "ahead", text: "快 48 小时" });
assert.deepEqual(fleet.clockState({ clock_offset_s: null }), { state: "unknown", text: "未知" });
assert.equal(fleet.clockState({ clock_offset_s: -3600, health_at: 1000, last_seen: 1010 }).state, "in_step");
assert.equal(fleet.clockState(undefined).state, "unknown");

// The fleet's 叫应 words in Chinese, a level by its name, an unknown reason as sent.
assert.equal(steps.stepWords("level 4"), "红色预警（Ⅰ级）");
assert.equal(steps.stepWords("nobody answered the village tier by its deadline"), "村级到期无人应答");
assert.equal(
  steps.stepWords("nobody on the roster for the county tier; every tier has been called, the last keeps being called"),
  "县级没有登记责任人；各层级均已呼叫，继续呼叫最后一级",
);
assert.equal(steps.stepWords("level fell back to yellow"), "级别回落到黄色预警（Ⅲ级）");
assert.equal(steps.stepWords("answered by 李梅 (village) via sms"), "李梅（村级） 已应答（短信）");
assert.equal(steps.stepWords("acknowledged by duty with the note: 已通知"), "duty 已确认，备注：已通知");
assert.equal(steps.stepWords("webhook http://127.0.0.1/*** answered 200"), "webhook http://127.0.0.1/*** answered 200");
assert.equal(steps.stepWords(null), "");
i18n.setLang("en");
assert.equal(steps.stepWords("level 3"), "Orange warning (level II)");
assert.equal(steps.stepWords("level rose to red: a new escalation calls again"), "level rose to Red warning (level I): a new escalation calls again");
assert.equal(steps.stepWords("nobody answered the village tier by its deadline"), "nobody answered the village tier by its deadline");
i18n.setLang("zh");

console.log("console logic: ok");
