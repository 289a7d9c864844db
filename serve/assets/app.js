// The overview page: figures from /api/v1/overview, rendered in Chinese (default) or English.
// Rates are numerator over denominator as the API gives them; an empty denominator shows "—"
// with its reason, never 0%. Periods come from the server (reporting time zone), not from here.
"use strict";

const TEXT = {
  zh: {
    title: "慢病管理试点 · 总览", switch: "English", loading: "正在读取……", backtests: "规则回测",
    failed: "无法读取数据：",
    signIn: "请使用带访问令牌的链接打开本页（由运维人员用 `vigil token add --role commission` 生成）。",
    none: "尚无患者状态数据：流水线还没有产生指标。",
    hospitals: "医院接入与数据时效", hospital: "医院", events: "事件数", newest: "最新数据",
    latest: "最新预警", time: "时间", rule: "规则", message: "内容", noLatest: "尚无预警",
    compare: "各医院对比", condition: "病种", managedShort: "在管", complicationsShort: "新发并发症/千患者年",
    caseMix: "高危及以上占比",
    thresholds: "颜色：控制率低于 40% 为红、40%–60% 为黄、60% 及以上为绿；规范管理率低于 50% 为红、50%–70% 为黄、70% 及以上为绿。点击表头排序。",
    HYPERTENSION: "高血压", DIABETES: "2型糖尿病",
    managed: "在管患者", standardised: "规范管理率", controlled: "控制率",
    complications: "新发并发症（每千患者年）", alerts: "预警确认率",
    patients: (n) => `${n} 名患者`,
    ofManaged: (n, m) => `在管 ${m} 人中 ${n} 人`,
    complicationWords: (n, y) => `${y} 患者年中新发 ${n} 例`,
    alertWords: (a, r) => `已确认 ${a} / 已发出 ${r} 个预警事件`,
    noManaged: "— （无在管患者）", noYears: "— （无管理时长）", noAlerts: "— （未发出预警）",
    period: (p) => `${p.start} 至 ${p.end}${p.finished ? "" : "（未结束）"}`,
    definition: (d) => `指标定义：${d}（国家基本公共卫生服务规范第三版）`,
    defManaged: "分母与分子：在本期内纳入管理（按指标定义）且期初存活的患者",
    defStandardised: "分子：本年至期末面对面随访次数达到已过季度数的在管患者；分母：在管患者",
    defControlled: "分子：本期最近一次随访达标的在管患者（血压 <140/90，空腹血糖 <7.0）；分母：在管患者",
    defComplications: "分子：在管患者本期新发脑卒中、心梗及糖尿病并发症诊断；分母：在管患者年 / 1000",
    defAlerts: "分子：本期内发出、已有临床医生确认的预警事件；分母：本期内发出的预警事件",
    ago: (d) => `${d} 天前`,
    alertActivity: "预警处置", alertMonths: "每月新发预警事件（近 18 个月，本月未结束）",
    severity: "级别", episodes: "预警事件", open: "未结束", ackShare: "确认率", ackMedian: "确认用时中位数",
    noEpisodes: "尚无预警事件", noAck: "— （无确认）", minutes: (m) => `${m} 分钟`,
    deliveries: (list) => `通知送达情况：${list}`, noDeliveries: "通知送达情况：— （尚无通知记录）",
    quality: "数据质量", received: "接收事件", rejected: "拒收记录（原因）", late: "迟到事件",
    lag: "入库延迟（最近一天的事件，中位 / 95%）", noRejections: "0", unknownHospital: "（无法识别）",
    duration: (m) => (m >= 1440 ? `${number(m / 1440, 1)} 天` : m >= 60 ? `${number(m / 60, 1)} 小时` : `${number(m, 0)} 分钟`),
    drill: "下钻：地区 → 医院 → 科室（最新年度）", region: "地区", department: "科室", total: "合计",
    allRegions: "全部地区", noRegion: "（未登记地区）", noDepartment: "（未指定科室）",
  },
  en: {
    title: "Chronic-disease pilot · Overview", switch: "中文", loading: "Loading…", backtests: "Rule backtests",
    failed: "Could not read the figures: ",
    signIn: "Open this page with the link that carries your access token (an operator makes one with `vigil token add --role commission`).", none: "No patient status yet: the pipeline has produced no metrics.",
    hospitals: "Hospitals connected and how fresh their data is", hospital: "Hospital", events: "Events", newest: "Newest data",
    latest: "Latest alerts", time: "Time", rule: "Rule", message: "Message", noLatest: "No alerts yet",
    compare: "Hospitals compared", condition: "Condition", managedShort: "Managed", complicationsShort: "New complications / 1,000 patient-years",
    caseMix: "High or very high risk",
    thresholds: "Colours: control rate below 40% red, 40–60% amber, 60% and above green; standardised management below 50% red, 50–70% amber, 70% and above green. Click a heading to sort.",
    HYPERTENSION: "Hypertension", DIABETES: "Type 2 diabetes",
    managed: "Patients under management", standardised: "Standardised management", controlled: "Control rate",
    complications: "New complications per 1,000 patient-years", alerts: "Alerts acknowledged",
    patients: (n) => `${n} patients`,
    ofManaged: (n, m) => `${n} of ${m} managed patients`,
    complicationWords: (n, y) => `${n} new in ${y} patient-years`,
    alertWords: (a, r) => `${a} of ${r} alert episodes acknowledged`,
    noManaged: "— (no managed patients)", noYears: "— (no time under management)", noAlerts: "— (no alerts raised)",
    period: (p) => `${p.start} to ${p.end}${p.finished ? "" : " (not finished)"}`,
    definition: (d) => `Definition: ${d} (national basic public health service standard, 3rd ed.)`,
    defManaged: "Patients under management in the period (by the definition) and alive at its start",
    defStandardised: "Numerator: managed patients whose face-to-face follow-ups this year reach the quarters elapsed; denominator: managed patients",
    defControlled: "Numerator: managed patients whose latest follow-up in the period met the target (BP < 140/90, fasting glucose < 7.0); denominator: managed patients",
    defComplications: "Numerator: first stroke, MI or diabetic complication diagnoses of managed patients in the period; denominator: managed patient-years / 1000",
    defAlerts: "Numerator: alert episodes raised in the period that a clinician acknowledged; denominator: alert episodes raised in the period",
    ago: (d) => `${d} days ago`,
    alertActivity: "Alerts and their handling", alertMonths: "Alert episodes raised per month (18 months, this month not finished)",
    severity: "Severity", episodes: "Episodes", open: "Open", ackShare: "Acknowledged", ackMedian: "Median time to acknowledge",
    noEpisodes: "No alert episodes yet", noAck: "— (none acknowledged)", minutes: (m) => `${m} min`,
    deliveries: (list) => `Notifications to hospitals: ${list}`, noDeliveries: "Notifications to hospitals: — (none recorded)",
    quality: "Data quality", received: "Events received", rejected: "Records refused (reason)", late: "Late events",
    lag: "Time to land, newest day's events (median / 95%)", noRejections: "0", unknownHospital: "(not identifiable)",
    duration: (m) => (m >= 1440 ? `${number(m / 1440, 1)} days` : m >= 60 ? `${number(m / 60, 1)} h` : `${number(m, 0)} min`),
    drill: "Drill down: region → hospital → department (newest year)", region: "Region", department: "Department", total: "Total",
    allRegions: "All regions", noRegion: "(region not recorded)", noDepartment: "(department not recorded)",
  },
};

// Colour bands of the comparison, as the legend on the page states them: [red below, green from].
const BANDS = { controlRate: [0.4, 0.6], standardisedRate: [0.5, 0.7] };
let sortKey = "hospital_id";
let sortDescending = false;

// Where the drill-down stands (region, then hospital within it), and the level the API gave.
const drillAt = { condition: "HYPERTENSION", region: null, hospital: null };
let drill = null;

let lang = new URLSearchParams(location.search).get("lang") || localStorage.getItem("vigil.lang") || "zh";
if (!TEXT[lang]) lang = "zh";
let overview = null;

const t = (key) => TEXT[lang][key];
const number = (n, digits = 0) =>
  new Intl.NumberFormat(lang === "zh" ? "zh-CN" : "en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits }).format(n);
const percent = (n, m) => `${number((100 * n) / m, 1)}%`;

function element(tag, attributes = {}, text = "") {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  if (text) node.textContent = text;
  return node;
}

// A monthly series as a line; the unfinished month's segment dashed.
function trend(points) {
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", "0 0 100 40");
  svg.setAttribute("preserveAspectRatio", "none");
  const known = points.filter((p) => p.value !== null);
  if (known.length < 2) return svg;
  const max = Math.max(...known.map((p) => p.value), 1e-9);
  const xy = known.map((p, i) => [(100 * i) / (known.length - 1), 38 - (36 * p.value) / max, p.finished]);
  const line = (pts, cls) => {
    const path = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
    path.setAttribute("points", pts.map(([x, y]) => `${x.toFixed(2)},${y.toFixed(2)}`).join(" "));
    path.setAttribute("class", cls);
    svg.appendChild(path);
  };
  const open = xy.findIndex((p) => !p[2]);
  if (open === -1) line(xy, "done");
  else {
    line(xy.slice(0, Math.max(open, 1)), "done");
    line(xy.slice(Math.max(open - 1, 0)), "unfinished");
  }
  return svg;
}

function card(id, title, figure, words, period, definition, series) {
  const node = element("article", { class: "card", id: `card-${id}`, title: definition });
  node.appendChild(element("h3", {}, title));
  node.appendChild(element("p", { class: "figure", id: `fig-${id}` }, figure));
  node.appendChild(element("p", { class: "words" }, words));
  if (period) node.appendChild(element("p", { class: "period" }, period));
  if (series) node.appendChild(trend(series));
  return node;
}

function renderCondition(cards, c) {
  const name = t(c.condition) || c.condition;
  const period = t("period")(c.period);
  const rate = (n) => (c.managed > 0 ? percent(n, c.managed) : t("noManaged"));
  const monthly = (pick) => c.trend.map((m) => ({ value: m.managed > 0 ? pick(m) / m.managed : null, finished: m.finished }));
  cards.appendChild(card(`${c.condition}-managed`, `${name} · ${t("managed")}`, number(c.managed),
    t("patients")(number(c.managed)), period, t("defManaged"), c.trend.map((m) => ({ value: m.managed, finished: m.finished }))));
  cards.appendChild(card(`${c.condition}-standardised`, `${name} · ${t("standardised")}`, rate(c.standardised),
    t("ofManaged")(number(c.standardised), number(c.managed)), period, t("defStandardised"), monthly((m) => m.standardised)));
  cards.appendChild(card(`${c.condition}-controlled`, `${name} · ${t("controlled")}`, rate(c.controlled),
    t("ofManaged")(number(c.controlled), number(c.managed)), period, t("defControlled"), monthly((m) => m.controlled)));
  const perThousand = c.patient_years > 0 ? number((1000 * c.new_complications) / c.patient_years, 1) : t("noYears");
  cards.appendChild(card(`${c.condition}-complications`, `${name} · ${t("complications")}`, perThousand,
    t("complicationWords")(number(c.new_complications), number(c.patient_years, 1)), period, t("defComplications"), null));
}

function render() {
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  for (const node of document.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
  const status = document.getElementById("status");
  const cards = document.getElementById("cards");
  cards.replaceChildren();
  if (!overview) return;
  status.textContent = overview.definition ? "" : t("none");
  document.getElementById("definition").textContent = overview.definition ? t("definition")(overview.definition) : "";
  for (const c of overview.conditions) renderCondition(cards, c);
  if (overview.definition) {
    const a = overview.alerts;
    const figure = a.raised > 0 ? percent(a.acknowledged, a.raised) : t("noAlerts");
    cards.appendChild(card("alerts", t("alerts"), figure, t("alertWords")(number(a.acknowledged), number(a.raised)),
      overview.conditions.length ? t("period")(overview.conditions[0].period) : "", t("defAlerts"), null));
  }
  renderComparison();
  renderDrill();
  const latest = document.querySelector("#latest tbody");
  latest.replaceChildren();
  for (const a of overview.latest_alerts) {
    const row = element("tr", { id: `alert-${a.alert_id}`, class: `severity-${a.severity.toLowerCase()}` });
    for (const text of [a.time, a.hospital_id, a.rule_id, a.message]) row.appendChild(element("td", {}, text));
    latest.appendChild(row);
  }
  if (!overview.latest_alerts.length) {
    const row = element("tr");
    row.appendChild(element("td", { colspan: "4" }, t("noLatest")));
    latest.appendChild(row);
  }
  renderAlertActivity(overview.alert_activity);
  renderQuality();
  const body = document.querySelector("#hospitals tbody");
  body.replaceChildren();
  const now = Date.now();
  for (const h of overview.hospitals) {
    const row = element("tr", { id: `hospital-${h.hospital_id}` });
    row.appendChild(element("td", {}, h.hospital_id));
    row.appendChild(element("td", { class: "number" }, number(h.events)));
    const day = new Date(h.newest_event_ms).toISOString().slice(0, 10);
    row.appendChild(element("td", {}, `${day} · ${t("ago")(number(Math.floor((now - h.newest_event_ms) / 86400000)))}`));
    body.appendChild(row);
  }
}

// Episodes per month as bars (the unfinished month dashed), per rule with acknowledgement, and
// what became of the notifications.
function renderAlertActivity(activity) {
  const figure = document.getElementById("alert-months");
  figure.querySelector("svg")?.remove();
  const totals = new Map();
  for (const m of activity.months) totals.set(m.month, (totals.get(m.month) || 0) + m.raised);
  // Eighteen months ending with the server's current month (the months are dates, not clocks).
  const [year, month] = activity.current_month.split("-").map(Number);
  const months = [];
  for (let back = 17; back >= 0; back--) {
    const index = year * 12 + (month - 1) - back;
    const start = `${Math.floor(index / 12)}-${String((index % 12) + 1).padStart(2, "0")}-01`;
    months.push([start, totals.get(start) || 0]);
  }
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", "0 0 180 40");
  svg.setAttribute("preserveAspectRatio", "none");
  const max = Math.max(1, ...months.map(([, n]) => n));
  const thisMonth = activity.current_month;
  months.forEach(([month, n], i) => {
    const bar = document.createElementNS("http://www.w3.org/2000/svg", "rect");
    const height = (38 * n) / max;
    bar.setAttribute("x", (10 * i + 1).toString());
    bar.setAttribute("y", (39 - height).toFixed(2));
    bar.setAttribute("width", "8");
    bar.setAttribute("height", height.toFixed(2));
    bar.setAttribute("class", month === thisMonth ? "bar unfinished" : "bar");
    bar.setAttribute("data-month", month);
    bar.setAttribute("data-raised", n.toString());
    const tip = document.createElementNS("http://www.w3.org/2000/svg", "title");
    tip.textContent = `${month.slice(0, 7)}: ${number(n)}`;
    bar.appendChild(tip);
    svg.appendChild(bar);
  });
  figure.appendChild(svg);

  const body = document.querySelector("#episodes tbody");
  body.replaceChildren();
  for (const e of activity.episodes) {
    const row = element("tr", { id: `episodes-${e.rule_id}-${e.severity}`, class: `severity-${e.severity.toLowerCase()}` });
    row.appendChild(element("td", {}, e.rule_id));
    row.appendChild(element("td", {}, e.severity));
    row.appendChild(element("td", { class: "number" }, number(e.episodes)));
    row.appendChild(element("td", { class: "number" }, number(e.open)));
    row.appendChild(element("td", { class: "number" }, e.episodes > 0 ? percent(e.acknowledged, e.episodes) : "—"));
    const median = e.median_minutes_to_acknowledge;
    row.appendChild(element("td", { class: "number" }, median === null ? t("noAck") : t("duration")(median)));
    body.appendChild(row);
  }
  if (!activity.episodes.length) {
    const row = element("tr");
    row.appendChild(element("td", { colspan: "6" }, t("noEpisodes")));
    body.appendChild(row);
  }
  const list = activity.deliveries.map((d) => `${d.outcome} ${number(d.alerts)}`).join(" · ");
  document.getElementById("deliveries").textContent = list ? t("deliveries")(list) : t("noDeliveries");
}

// Per hospital: events received, records refused by reason, late events, time to land.
function renderQuality() {
  const body = document.querySelector("#quality tbody");
  body.replaceChildren();
  const byHospital = new Map();
  for (const q of overview.quality) byHospital.set(q.hospital_id, { ...q, refused: [] });
  for (const r of overview.rejections) {
    if (!byHospital.has(r.hospital_id)) byHospital.set(r.hospital_id, { hospital_id: r.hospital_id, events: 0, late: 0, lag_p50_minutes: null, lag_p95_minutes: null, refused: [] });
    byHospital.get(r.hospital_id).refused.push(r);
  }
  const ids = [...byHospital.keys()].sort();
  for (const id of ids) {
    const q = byHospital.get(id);
    const row = element("tr", { id: `quality-${id || "unknown"}` });
    row.appendChild(element("td", {}, id || t("unknownHospital")));
    row.appendChild(element("td", { class: "number" }, number(q.events)));
    const total = q.refused.reduce((sum, r) => sum + r.records, 0);
    const reasons = q.refused.map((r) => `${r.reason_code} ${number(r.records)}`).join("，");
    row.appendChild(element("td", { class: "number", "data-refused": total.toString() }, total ? `${number(total)}（${reasons}）` : t("noRejections")));
    row.appendChild(element("td", { class: "number" }, number(q.late)));
    const lag = q.lag_p50_minutes === null ? "—" : `${t("duration")(q.lag_p50_minutes)} / ${t("duration")(q.lag_p95_minutes)}`;
    row.appendChild(element("td", { class: "number" }, lag));
    body.appendChild(row);
  }
}

// Each hospital and condition with its rates; an empty denominator is "—", never 0%.
function renderComparison() {
  document.getElementById("thresholds").textContent = t("thresholds");
  const share = (n, m) => (m > 0 ? n / m : null);
  const rows = overview.hospital_rates.map((h) => ({
    ...h,
    standardisedRate: share(h.standardised, h.managed),
    controlRate: share(h.controlled, h.managed),
    complicationRate: h.years > 0 ? (1000 * h.complications) / h.years : null,
    highRiskShare: share(h.high_risk, h.managed),
  }));
  const order = (a, b) => {
    const [x, y] = [a[sortKey], b[sortKey]];
    if (x === y) return 0;
    if (x === null) return 1; // "—" last whichever way
    if (y === null) return -1;
    return (x < y ? -1 : 1) * (sortDescending ? -1 : 1);
  };
  rows.sort(order);
  const body = document.querySelector("#compare tbody");
  body.replaceChildren();
  const rate = (value) => (value === null ? "—" : `${number(100 * value, 1)}%`);
  const band = (key, value) => {
    if (value === null || !BANDS[key]) return "";
    const [red, green] = BANDS[key];
    return value < red ? "band-low" : value < green ? "band-mid" : "band-good";
  };
  for (const r of rows) {
    const row = element("tr", { id: `compare-${r.hospital_id}-${r.condition}` });
    row.appendChild(element("td", {}, r.hospital_id));
    row.appendChild(element("td", {}, t(r.condition) || r.condition));
    row.appendChild(element("td", { class: "number" }, number(r.managed)));
    for (const key of ["standardisedRate", "controlRate"]) {
      row.appendChild(element("td", { class: `number ${band(key, r[key])}`, "data-key": key }, rate(r[key])));
    }
    const complications = r.complicationRate === null ? "—" : number(r.complicationRate, 1);
    row.appendChild(element("td", { class: "number" }, complications));
    row.appendChild(element("td", { class: "number" }, rate(r.highRiskShare)));
    body.appendChild(row);
  }
}

// One level of the drill-down from /api/v1/drilldown (sums computed by the server from the
// reading every viewer shares); a row opens the level below, the path above goes back up.
async function loadDrill() {
  const query = new URLSearchParams({ condition: drillAt.condition });
  if (drillAt.region !== null) query.set("region", drillAt.region);
  if (drillAt.hospital !== null) query.set("hospital", drillAt.hospital);
  const response = await fetch(`/api/v1/drilldown?${query}`);
  if (!response.ok) return;
  drill = await response.json();
  renderDrill();
  document.body.dataset.drill = `${drill.level}:${drill.region ?? ""}:${drill.hospital ?? ""}`;
}

function drillName(level, key) {
  if (key !== "") return key;
  return level === "region" ? t("noRegion") : level === "department" ? t("noDepartment") : key;
}

function renderDrill() {
  const body = document.querySelector("#drill tbody");
  const foot = document.querySelector("#drill tfoot");
  const path = document.getElementById("drill-path");
  body.replaceChildren();
  foot.replaceChildren();
  path.replaceChildren();
  if (!drill) return;
  document.getElementById("drill-level").textContent = t(drill.level);
  const step = (label, onClick) => {
    const link = element("a", { href: "#drill" }, label);
    link.addEventListener("click", (event) => { event.preventDefault(); onClick(); loadDrill(); });
    path.appendChild(link);
  };
  step(t("allRegions"), () => { drillAt.region = null; drillAt.hospital = null; });
  if (drill.region !== null) {
    path.append(" › ");
    step(drillName("region", drill.region), () => { drillAt.hospital = null; });
  }
  if (drill.hospital !== null) path.append(` › ${drill.hospital}`);
  const rate = (value) => (value === null ? t("noManaged") : `${number(100 * value, 1)}%`);
  const cells = (row, f) => {
    row.appendChild(element("td", { class: "number", "data-key": "managed" }, number(f.managed)));
    row.appendChild(element("td", { class: "number", "data-key": "standardised" }, rate(f.standardised_rate)));
    row.appendChild(element("td", { class: "number", "data-key": "controlled" }, rate(f.control_rate)));
  };
  for (const r of drill.rows) {
    const row = element("tr", { id: `drill-${r.key || "none"}` });
    const name = element("td", {}, drillName(drill.level, r.key));
    if (drill.level !== "department") {
      name.classList.add("drillable");
      row.addEventListener("click", () => {
        if (drill.level === "region") drillAt.region = r.key;
        else drillAt.hospital = r.key;
        loadDrill();
      });
    }
    row.appendChild(name);
    cells(row, r);
    body.appendChild(row);
  }
  const total = element("tr", { id: "drill-total" });
  total.appendChild(element("th", {}, t("total")));
  cells(total, drill.total);
  foot.appendChild(total);
}

document.getElementById("drill-condition").addEventListener("change", (event) => {
  drillAt.condition = event.target.value;
  drillAt.region = null;
  drillAt.hospital = null;
  loadDrill();
});

for (const heading of document.querySelectorAll("#compare th[data-sort]")) {
  heading.addEventListener("click", () => {
    sortDescending = sortKey === heading.dataset.sort ? !sortDescending : heading.dataset.sort !== "hospital_id";
    sortKey = heading.dataset.sort;
    if (overview) renderComparison();
  });
}

async function load() {
  try {
    const response = await fetch("/api/v1/overview");
    if (response.status === 401 || response.status === 403) {
      document.getElementById("status").textContent = t("signIn");
      return false;
    }
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    overview = await response.json();
    render();
    await loadDrill();
    document.body.dataset.loaded = "true";
    return true;
  } catch (error) {
    document.getElementById("status").textContent = t("failed") + error.message;
    return true;
  }
}

document.getElementById("lang").addEventListener("click", () => {
  lang = lang === "zh" ? "en" : "zh";
  localStorage.setItem("vigil.lang", lang);
  render();
});
// Live: every new reading of the figures arrives as an event; the browser reconnects by itself
// (sending Last-Event-ID), so a dropped connection costs nothing.
function listen() {
  const events = new EventSource("/api/v1/stream");
  events.addEventListener("overview", (event) => {
    overview = JSON.parse(event.data);
    render();
    loadDrill();
    document.body.dataset.version = event.lastEventId;
    document.body.dataset.loaded = "true";
  });
}

render();
// The stream opens once the page has loaded its figures, so the page counts as loaded.
load().then((allowed) => { if (allowed) listen(); });
