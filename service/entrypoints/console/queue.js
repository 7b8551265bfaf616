// The pending cases, oldest first as GET /reviews lists them: one focusable row per case
// (<tr data-application-id>), opened with a click or Enter. The desk's fields (age, overdue,
// requested_by, claims) are shown when the server sends them; age falls back to decided_at.
import { maskValue } from "./mask.js";
import { t } from "./i18n.js";
import { clear, el } from "./dom.js";

export function age(item, now = Date.now()) {
  const seconds = typeof item.age_seconds === "number"
    ? item.age_seconds : Math.max(0, (now - Date.parse(item.decided_at)) / 1000);
  if (!Number.isFinite(seconds)) return t("not_given");
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return t("minutes", minutes);
  const hours = Math.floor(minutes / 60);
  if (hours < 24) return t("hours", hours, minutes % 60);
  return t("days", Math.floor(hours / 24), hours % 24);
}

function overdue(item) {
  if (item.overdue === undefined) return el("td", { text: t("not_given") });
  return el("td", { class: item.overdue ? "overdue" : "" },
    t(item.overdue ? "overdue_yes" : "overdue_no"));
}

function claim(item) {
  if (!("claimed_by" in item)) return el("td", { text: t("not_given") });
  if (!item.claimed_by) return el("td", { text: t("unclaimed") });
  const until = item.claimed_until ? ` ${t("claimed_until", item.claimed_until)}` : "";
  return el("td", { class: "claimed", text: `${maskValue("reviewer_id", item.claimed_by)}${until}` });
}

function requestedBy(item) {
  if (!item.requested_by) return t("not_given");
  return t(`requested_by_${item.requested_by}`);
}

function row(item, open) {
  const tr = el("tr", { tabindex: 0, dataset: { applicationId: item.application_id, userId: item.user_id } },
    el("td", { text: maskValue("application_id", item.application_id) }),
    el("td", { text: maskValue("user_id", item.user_id) }),
    el("td", { text: item.product }),
    el("td", { class: "num", text: item.amount ?? t("not_given") }),
    el("td", { text: (item.reason_codes || []).join(", ") }),
    el("td", { text: requestedBy(item) }),
    el("td", { class: "num", text: age(item) }),
    overdue(item),
    claim(item));
  tr.addEventListener("click", () => open(item));
  tr.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      open(item);
    }
  });
  return tr;
}

export function renderQueue(body, empty, items, open) {
  clear(body).append(...items.map((item) => row(item, open)));
  empty.hidden = items.length > 0;
}
