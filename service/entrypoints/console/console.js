// The reviewer console: sign in with a reviewer key (this tab only), the queue, one case, and
// the desk's actions. Each action is one call to the API (api.js); its error is shown with the
// API's own message.
import { ApiError, api, session } from "./api.js";
import { applyStrings, lang, setLang, t } from "./i18n.js";
import { pickedCodes, renderCase, renderCodes } from "./case.js";
import { renderQueue } from "./queue.js";

const $ = (id) => document.getElementById(id);
const state = { items: [], codes: [], item: null, view: null, said: null };

function showError(error) {
  const box = $("error");
  const detail = error instanceof ApiError
    ? [error.message, ...Object.entries(error.fields).map(([f, m]) => `${f}: ${[].concat(m).join(" ")}`)]
    : [t("network", error.message)];
  box.textContent = detail.join(" — ");
  box.hidden = false;
}

// The last status line, as its string key and arguments: a language switch says it again.
function say(key, ...args) {
  state.said = [key, ...args];
  $("error").hidden = true;
  $("status").textContent = t(key, ...args);
}

// Run one action: errors are shown, never thrown away.
async function act(work) {
  try {
    await work();
  } catch (error) {
    showError(error);
  }
}

function needReviewer() {
  if (session.reviewer()) return true;
  showError(new ApiError(0, "reviewer_id", t("need_id")));
  $("reviewer-id").focus();
  return false;
}

const QUEUE_PAGES = 5;   // at most 500 cases on the page, oldest first

async function loadQueue() {
  const items = [];
  let cursor = null;
  for (let n = 0; n < QUEUE_PAGES; n += 1) {
    const page = await api.queue(cursor);
    items.push(...(page.items || []));
    cursor = page.next_cursor;
    if (!cursor) break;
  }
  state.items = items;
  renderQueue($("queue-rows"), $("queue-empty"), state.items, (item) => act(() => openCase(item)));
  say("queue_loaded", state.items.length);
  if (state.item) {
    state.item = state.items.find((i) => i.application_id === state.item.application_id
      && i.user_id === state.item.user_id) || state.item;
  }
}

async function signIn(event) {
  event.preventDefault();
  session.save($("reviewer-key").value.trim(), $("reviewer-id").value.trim());
  await act(async () => {
    const found = await api.reasonCodes();
    state.codes = found.reason_codes || [];
    renderCodes(state.codes);
    await loadQueue();
    $("desk").hidden = false;
  });
}

function signOut() {
  session.clear();
  Object.assign(state, { items: [], item: null, view: null });
  $("reviewer-key").value = "";
  $("reviewer-id").value = "";
  $("desk").hidden = true;
  $("case").hidden = true;
  say("signed_out");
}

async function openCase(item) {
  state.item = item;
  state.view = await api.application(item.application_id, item.user_id);
  renderCase(state.view, item);
  $("case").hidden = false;
  $("decision-note").value = "";
  $("note-text").value = "";
  $("case-title").focus();
}

async function reloadCase() {
  await loadQueue();
  await openCase(state.item);
}

function closeCase() {
  const id = state.item && state.item.application_id;
  state.item = state.view = null;
  $("case").hidden = true;
  const row = id && document.querySelector(`#queue-rows tr[data-application-id="${CSS.escape(id)}"]`);
  (row || $("queue-title")).focus();
}

const actions = {
  claim: () => act(async () => {
    if (!needReviewer()) return;
    await api.claim(state.item.application_id, state.item.user_id);
    await reloadCase();
    say("claimed", state.item.application_id);
  }),
  release: () => act(async () => {
    if (!needReviewer()) return;
    await api.release(state.item.application_id, state.item.user_id);
    await reloadCase();
    say("released", state.item.application_id);
  }),
  note: (event) => act(async () => {
    event.preventDefault();
    if (!needReviewer()) return;
    const text = $("note-text").value.trim();
    if (!text) return showError(new ApiError(0, "text", t("need_text")));
    await api.note(state.item.application_id, state.item.user_id, text);
    await reloadCase();
    say("noted");
  }),
  decide: (outcome) => act(async () => {
    if (!needReviewer()) return;
    const codes = outcome === "rejected" ? pickedCodes() : [];
    if (outcome === "rejected" && !codes.length) return showError(new ApiError(0, "reason_codes", t("need_codes")));
    const { application_id: id, user_id: user } = state.item;
    await api.review(id, user, outcome, codes, $("decision-note").value.trim());
    await loadQueue();
    closeCase();
    say(outcome, id);
  }),
};

function switchLang(name) {
  setLang(name);
  applyStrings();
  $("lang-zh").setAttribute("aria-pressed", String(lang() === "zh"));
  $("lang-en").setAttribute("aria-pressed", String(lang() === "en"));
  renderCodes(state.codes);
  renderQueue($("queue-rows"), $("queue-empty"), state.items, (item) => act(() => openCase(item)));
  if (state.view) renderCase(state.view, state.item);
  if (state.said && $("error").hidden) say(...state.said);
}

function wire() {
  $("login").addEventListener("submit", signIn);
  $("sign-out").addEventListener("click", signOut);
  $("lang-zh").addEventListener("click", () => switchLang("zh"));
  $("lang-en").addEventListener("click", () => switchLang("en"));
  $("refresh").addEventListener("click", () => act(loadQueue));
  $("close-case").addEventListener("click", closeCase);
  $("case").addEventListener("keydown", (event) => {
    if (event.key === "Escape") closeCase();
  });
  $("claim").addEventListener("click", actions.claim);
  $("release").addEventListener("click", actions.release);
  $("note-form").addEventListener("submit", actions.note);
  $("approve").addEventListener("click", () => actions.decide("approved"));
  $("reject").addEventListener("click", () => actions.decide("rejected"));
}

wire();
switchLang(lang());
$("reviewer-key").value = session.key();
$("reviewer-id").value = session.reviewer();
if (session.key()) $("login").requestSubmit();
else say("signed_out");
