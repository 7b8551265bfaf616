// One case as GET /applications/<id>?user_id= shows it to a reviewer: the request (every field
// path and value, ID and phone numbers masked), the reasons, the trace, the recourse and the
// notes. Every value goes in through textContent, masked first (mask.js).
import { maskValue } from "./mask.js";
import { lang, t } from "./i18n.js";
import { clear, el, shown } from "./dom.js";

const $ = (id) => document.getElementById(id);

function flatten(value, prefix = "") {
  if (value && typeof value === "object" && !Array.isArray(value)) {
    return Object.entries(value).flatMap(([k, v]) => flatten(v, prefix ? `${prefix}.${k}` : k));
  }
  const key = prefix.split(".").pop();
  return [[prefix, maskValue(key, value)]];
}

function pairs(dl, rows) {
  clear(dl).append(...rows.flatMap(([name, value]) => [el("dt", { text: name }), el("dd", { text: value })]));
}

function summary(view, item) {
  const decision = view.decision || {};
  // the view's claim (GET /applications/<id> shows it for every case), else the queue row's
  const holder = view.review && "claimed_by" in view.review ? view.review : item || {};
  const claim = holder.claimed_by
    ? `${maskValue("reviewer_id", holder.claimed_by)} ${t("claimed_until", holder.claimed_until || "")}`
    : ("claimed_by" in holder ? t("unclaimed") : t("not_given"));
  pairs($("case-summary"), [
    [t("col_user"), maskValue("user_id", view.user_id)],
    [t("col_product"), decision.product ?? t("not_given")],
    [t("status"), view.status],
    [t("outcome"), decision.outcome ?? t("not_given")],
    [t("decided_at"), decision.decided_at ?? t("not_given")],
    [t("col_requested_by"), item && item.requested_by ? t(`requested_by_${item.requested_by}`) : t("not_given")],
    [t("col_claim"), claim],
  ]);
}

function applicant(view) {
  const rows = view.request ? flatten(view.request) : [];
  clear($("applicant")).append(...rows.map(([path, value]) =>
    el("div", {}, el("dt", { text: path }), el("dd", { text: shown(value) }))));
  $("no-request").hidden = rows.length > 0;
  const statement = view.human_review && view.human_review.statement;
  $("statement").hidden = !statement;
  $("statement-text").textContent = statement ? maskValue("statement", statement) : "";
}

function reasons(decision) {
  const list = decision.reasons || [];
  const zh = lang() === "zh";
  clear($("reasons")).append(...list.map((r) => el("li", {},
    el("strong", { text: `${r.code} (${r.rule_id})` }), " ",
    maskValue("message", zh ? r.message_zh : r.message_en), " — ",
    el("span", { class: "advice", text: maskValue("advice", zh ? r.advice_zh : r.advice_en) }), " ",
    el("code", { text: shown(maskValue("inputs", r.inputs || {})) }))));
  if (!list.length) $("reasons").append(el("li", { text: t("no_reasons") }));
}

function trace(decision) {
  clear($("trace-rows")).append(...(decision.trace || []).map((step) => el("tr", {
    class: step.passed ? "passed" : "failed" },
  el("td", { text: step.check ? `${step.rule_id} · ${step.check}` : step.rule_id }),
  el("td", { text: t(step.passed ? "passed_yes" : "passed_no") }),
  el("td", {}, el("code", { text: shown(maskValue("inputs", step.inputs || {})) })))));
}

function recourse(decision) {
  const box = clear($("recourse"));
  const found = decision.recourse;
  if (!found || (!(found.options || []).length && !(found.unreachable || []).length)) {
    box.append(el("p", { text: t("no_recourse") }));
    return;
  }
  box.append(el("ul", {}, ...(found.options || []).map((option) => el("li", { text: [
    ...(option.changes || []).map((c) => t("change_to", c.field, shown(maskValue(c.field, c.to)))),
    option.wait_until ? t("wait_until", option.wait_until) : null,
    t("gives", option.outcome),
  ].filter(Boolean).join("; ") }))));
  if ((found.unreachable || []).length) box.append(el("p", { text: t("unreachable", found.unreachable.join(", ")) }));
}

function notes(view) {
  const list = (view.review && view.review.notes) || [];
  clear($("notes")).append(...list.map((n) => el("li", {},
    el("span", { class: "meta", text: `${maskValue("reviewer_id", n.reviewer_id)} · ${n.at}` }), " ",
    maskValue("text", n.text))));
  $("no-notes").hidden = list.length > 0;
}

export function renderCase(view, item) {
  const decision = view.decision || {};
  $("case-title").textContent = t("case", maskValue("application_id", view.application_id));
  summary(view, item);
  applicant(view);
  reasons(decision);
  trace(decision);
  recourse(decision);
  notes(view);
}

// The reject picker: one checkbox per fixed reason code (GET /reviews/reason-codes).
export function renderCodes(codes) {
  clear($("code-list")).append(...codes.map(({ code, starts_cooldown: window }) => el("label", { class: "code" },
    el("input", { type: "checkbox", name: "reason_code", value: code }),
    ` ${code}`, window ? el("small", { text: t("starts_window") }) : null)));
}

export function pickedCodes() {
  return Array.from(document.querySelectorAll("#code-list input:checked"), (box) => box.value);
}
