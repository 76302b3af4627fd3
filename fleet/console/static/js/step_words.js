// The fleet's words for 叫应 steps and end reasons ("nobody answered the village tier by
// its deadline", "level 4") in the page's language, a level always by its name. A reason
// this module does not know is shown as the fleet sent it: it never drops or shortens one,
// and never shows a level as a bare number where it knows the phrase.

import { LEVEL_BY_NAME, currentLang, levelName, t } from "./i18n.js";

const TIERS = "(village|township|county)";
const EVERY_TIER_CALLED = "; every tier has been called, the last keeps being called";

const tier = (name) => t(`tier_${name}`);
const via = (name) => {
  const key = `via_${name}`;
  const word = t(key);
  return word === key ? name : word;
};
/** "李梅 (village)" as the fleet labels a roster person: "李梅（村级）" in Chinese. */
const person = (label) =>
  currentLang() === "zh" ? label.replace(new RegExp(` \\(${TIERS}\\)`, "g"), (_, n) => `（${tier(n)}）`) : label;

/** [pattern, (match) => words] in Chinese; English keeps the fleet's words but names levels. */
const ZH = [
  [new RegExp(`^nobody answered the ${TIERS} tier by its deadline$`), (m) => `${tier(m[1])}到期无人应答`],
  [new RegExp(`^nobody on the roster for the ${TIERS} tier$`), (m) => `${tier(m[1])}没有登记责任人`],
  [
    new RegExp(`^no configured channel reaches anyone of the ${TIERS} tier$`),
    (m) => `没有已配置的渠道能呼叫到${tier(m[1])}责任人`,
  ],
  [/^alarm back to normal$/, () => "预警已解除"],
  [/^level fell back to (\w+)$/, (m) => `级别回落到${levelName(m[1])}`],
  [/^level rose to (\w+): a new escalation calls again$/, (m) => `级别升到${levelName(m[1])}，重新开始叫应`],
  [/^acknowledged by (.+?) with the note: ([\s\S]*)$/, (m) => `${m[1]} 已确认，备注：${m[2]}`],
  [/^answered by (.+) via (\w+)$/, (m) => `${person(m[1])} 已应答（${via(m[2])}）`],
];

/** A step's detail or an end reason in the page's language. */
export function stepWords(text) {
  if (text === null || text === undefined) return "";
  const level = /^level ([0-4])$/.exec(text);
  if (level) return levelName(Number(level[1]));
  if (currentLang() !== "zh") {
    return text.replace(/level (fell back|rose) to (\w+)/, (all, how, name) =>
      name in LEVEL_BY_NAME ? `level ${how} to ${levelName(name)}` : all,
    );
  }
  let rest = text;
  let tail = "";
  if (rest.endsWith(EVERY_TIER_CALLED)) {
    rest = rest.slice(0, -EVERY_TIER_CALLED.length);
    tail = "；各层级均已呼叫，继续呼叫最后一级";
  }
  for (const [pattern, words] of ZH) {
    const match = pattern.exec(rest);
    if (match) return words(match) + tail;
  }
  return person(rest) + tail;
}
