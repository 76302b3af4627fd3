// Words of the console in Chinese (first) and English, and how levels are named (the
// same names as protocol/levels.py; tests/test_console_assets.py holds them equal).
// Internal levels run 1 (blue) to 4 (red); county staff read 红色预警（Ⅰ级） for 4, so a level
// is only ever shown through levelName(), never as a bare number.

const STORE_KEY = "hazardwatch.lang";

const WORDS = {
  zh: {
    app_title: "HazardWatch 县级监测预警平台",
    skip_to_content: "跳到正文",
    loading: "正在加载…",
    nav_overview: "总览",
    nav_alarms: "预警",
    nav_gateways: "网关",
    sign_out: "退出",
    sign_in: "登录",
    sign_in_title: "登录监测预警平台",
    sign_in_help: "输入管理员发放的 API 令牌。令牌只用于换取本浏览器的会话，不会被保存。",
    token: "API 令牌",
    bad_token: "令牌无效、已吊销或已过期。",
    session_over: "会话已结束，请重新登录。",
    role_viewer: "查看员",
    role_operator: "值班员",
    role_configurator: "配置员",
    role_admin: "管理员",
    live_on: "实时",
    live_off: "实时连接中断，正在重连…",
    map: "监测点分布图",
    map_problem: "县界文件不可用，显示示例县界：",
    no_position: "{n} 个监测点未填写坐标（站点文件 [site] 的 lat、lon）。",
    active_alarms: "当前预警",
    no_active_alarms: "当前没有预警。",
    health: "网关状态",
    online: "在线",
    offline: "离线",
    never_seen: "从未上线",
    backlog: "待上传",
    battery: "电池",
    supply: "供电",
    faults: "故障",
    all_healthy: "所有网关正常。",
    and_more: "另有 {n} 个",
    site: "监测点",
    gateway: "网关",
    rule: "规则",
    level: "级别",
    raised: "发生时间",
    cleared: "解除时间",
    active: "进行中",
    ended: "已解除",
    acknowledged: "已确认",
    acknowledged_by: "{who} 于 {at} 确认",
    not_acknowledged: "未确认",
    called: "已呼叫",
    answered: "已应答",
    not_answered: "未应答",
    tier: "当前层级",
    tier_col: "层级",
    no_alarms_period: "该时段没有预警。",
    tier_village: "村级",
    tier_township: "乡镇级",
    tier_county: "县级",
    called_as: "{person}（{channel}·{status}）",
    list_sep: "、",
    last_step: "最近一步",
    call_planned: "待发",
    call_sent: "已发送",
    call_delivered: "已送达",
    call_failed: "失败",
    channel_sms: "短信",
    channel_email: "邮件",
    channel_webhook: "接口",
    channel_voice: "电话",
    next_tier_in: "{t} 后升级呼叫",
    next_tier_due: "正在升级呼叫",
    escalation_ended: "叫应结束：{why}",
    no_escalation: "无叫应记录",
    open_site: "查看监测点",
    period: "时段",
    period_24h: "24 小时",
    period_7d: "7 天",
    period_30d: "30 天",
    period_all: "全部",
    no_readings: "该时段没有数据。",
    thresholds: "阈值",
    window_rain: "{window} 雨量",
    window_too_short: "{window} 窗口短于本时段图表的分辨率，请选较短的时段查看。",
    horizon_h: "距失稳小时数",
    roster: "责任人",
    roster_empty: "尚未登记责任人。",
    name: "姓名",
    role: "职务",
    mobile: "手机",
    email: "邮箱",
    recent_alarms: "近期预警",
    alarm_history: "预警记录",
    filter: "筛选",
    all: "全部",
    answered_filter: "应答",
    yes: "是",
    no: "否",
    acknowledge: "确认预警",
    note: "备注",
    record_answer: "登记应答",
    person: "应答人",
    via: "方式",
    via_phone: "电话",
    via_sms: "短信",
    via_radio: "广播/对讲",
    via_in_person: "当面",
    submit: "提交",
    cancel: "取消",
    saved: "已保存。",
    receipts: "应答记录",
    none: "无",
    gateways: "网关",
    last_seen: "最后通信",
    agent_version: "程序版本",
    config_version: "配置版本",
    state: "状态",
    rollouts: "推送任务",
    no_rollouts: "没有推送任务。",
    rollout_kind: "类型",
    rollout_target: "内容",
    rollout_wave: "批次",
    forbidden: "当前角色无权执行此操作。",
    error: "出错了：{detail}",
    not_found: "找不到该监测点。",
    count_alarms: "共 {n} 条",
    seconds: "{n} 秒",
    minutes: "{n} 分",
    hours: "{n} 小时",
    unit_v: "V",
  },
  en: {
    app_title: "HazardWatch county console",
    skip_to_content: "Skip to content",
    loading: "Loading…",
    nav_overview: "Overview",
    nav_alarms: "Alarms",
    nav_gateways: "Gateways",
    sign_out: "Sign out",
    sign_in: "Sign in",
    sign_in_title: "Sign in to the county console",
    sign_in_help: "Enter the API token your administrator gave you. It only opens a session in this browser and is not stored.",
    token: "API token",
    bad_token: "Unknown, revoked or expired token.",
    session_over: "The session has ended; please sign in again.",
    role_viewer: "viewer",
    role_operator: "operator",
    role_configurator: "configurator",
    role_admin: "admin",
    live_on: "Live",
    live_off: "Live updates lost, reconnecting…",
    map: "Map of monitoring sites",
    map_problem: "County boundary unusable, showing the sample: ",
    no_position: "{n} sites have no coordinates (lat, lon in [site] of the site file).",
    active_alarms: "Active alarms",
    no_active_alarms: "No active alarms.",
    health: "Gateway health",
    online: "online",
    offline: "offline",
    never_seen: "never seen",
    backlog: "backlog",
    battery: "battery",
    supply: "supply",
    faults: "faults",
    all_healthy: "All gateways healthy.",
    and_more: "{n} more",
    site: "Site",
    gateway: "Gateway",
    rule: "Rule",
    level: "Level",
    raised: "Raised",
    cleared: "Cleared",
    active: "active",
    ended: "ended",
    acknowledged: "acknowledged",
    acknowledged_by: "acknowledged by {who} at {at}",
    not_acknowledged: "not acknowledged",
    called: "Called",
    answered: "Answered",
    not_answered: "not answered",
    tier: "Tier",
    tier_col: "Tier",
    no_alarms_period: "No alarms in this period.",
    tier_village: "village",
    tier_township: "township",
    tier_county: "county",
    called_as: "{person} ({channel}, {status})",
    list_sep: ", ",
    last_step: "Last step",
    call_planned: "planned",
    call_sent: "sent",
    call_delivered: "delivered",
    call_failed: "failed",
    channel_sms: "SMS",
    channel_email: "e-mail",
    channel_webhook: "webhook",
    channel_voice: "voice",
    next_tier_in: "next tier called in {t}",
    next_tier_due: "calling the next tier",
    escalation_ended: "calling ended: {why}",
    no_escalation: "no calling record",
    open_site: "Open site",
    period: "Period",
    period_24h: "24 h",
    period_7d: "7 days",
    period_30d: "30 days",
    period_all: "all",
    no_readings: "No readings in this period.",
    thresholds: "Thresholds",
    window_rain: "rain over {window}",
    window_too_short: "The {window} window is shorter than this period's chart resolution: choose a shorter period.",
    horizon_h: "hours before failure",
    roster: "Responsible persons",
    roster_empty: "No responsible persons registered.",
    name: "Name",
    role: "Role",
    mobile: "Mobile",
    email: "E-mail",
    recent_alarms: "Recent alarms",
    alarm_history: "Alarm history",
    filter: "Filter",
    all: "all",
    answered_filter: "Answered",
    yes: "yes",
    no: "no",
    acknowledge: "Acknowledge",
    note: "Note",
    record_answer: "Record answer",
    person: "Person",
    via: "Via",
    via_phone: "phone",
    via_sms: "SMS",
    via_radio: "radio",
    via_in_person: "in person",
    submit: "Submit",
    cancel: "Cancel",
    saved: "Saved.",
    receipts: "Answers",
    none: "none",
    gateways: "Gateways",
    last_seen: "Last seen",
    agent_version: "Agent",
    config_version: "Config",
    state: "State",
    rollouts: "Rollouts",
    no_rollouts: "No rollouts.",
    rollout_kind: "Kind",
    rollout_target: "What",
    rollout_wave: "Wave",
    forbidden: "Your role may not do this.",
    error: "Something went wrong: {detail}",
    not_found: "No such site.",
    count_alarms: "{n} alarms",
    seconds: "{n} s",
    minutes: "{n} min",
    hours: "{n} h",
    unit_v: "V",
  },
};

const LEVELS = {
  zh: ["正常", "蓝色预警（Ⅳ级）", "黄色预警（Ⅲ级）", "橙色预警（Ⅱ级）", "红色预警（Ⅰ级）"],
  en: [
    "Normal",
    "Blue warning (level IV)",
    "Yellow warning (level III)",
    "Orange warning (level II)",
    "Red warning (level I)",
  ],
};
const UNKNOWN_LEVEL = { zh: "级别未知", en: "unknown level" };

//: Internal level names (as the fleet sends them) to their numbers.
export const LEVEL_BY_NAME = { normal: 0, blue: 1, yellow: 2, orange: 3, red: 4 };

let lang = readStoredLang();

function readStoredLang() {
  try {
    const stored = window.localStorage.getItem(STORE_KEY);
    return stored === "en" || stored === "zh" ? stored : "zh";
  } catch {
    return "zh"; // storage blocked (private mode): Chinese, not stored
  }
}

export function currentLang() {
  return lang;
}

export function setLang(next) {
  lang = next === "en" ? "en" : "zh";
  try {
    window.localStorage.setItem(STORE_KEY, lang);
  } catch {
    // storage blocked: the switch still holds for this page
  }
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
}

/** The word for `key`, with `{name}` placeholders filled from `vars`. */
export function t(key, vars = {}) {
  const word = WORDS[lang][key] ?? WORDS.zh[key] ?? key;
  return word.replace(/\{(\w+)\}/g, (_, name) => String(vars[name] ?? ""));
}

/** "红色预警（Ⅰ级）" / "Red warning (level I)" for internal level 4; never the bare number. */
export function levelName(level) {
  const n = typeof level === "string" ? LEVEL_BY_NAME[level] : level;
  return LEVELS[lang][n] ?? UNKNOWN_LEVEL[lang];
}

/** Fill every `data-i18n` element under `root` with its word. */
export function translateStatic(root = document) {
  for (const el of root.querySelectorAll("[data-i18n]")) {
    el.textContent = t(el.dataset.i18n);
  }
  document.title = t("app_title");
}
