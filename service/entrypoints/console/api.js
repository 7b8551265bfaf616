// The service's endpoints, with the reviewer key of this tab. The key and the reviewer id live
// in sessionStorage only: never a cookie, never a URL, gone when the tab closes.
const KEY = "console.key";
const REVIEWER = "console.reviewer";

export class ApiError extends Error {
  constructor(status, code, message, fields) {
    super(message);
    Object.assign(this, { status, code, fields: fields || {} });
  }
}

export const session = {
  key: () => sessionStorage.getItem(KEY) || "",
  reviewer: () => sessionStorage.getItem(REVIEWER) || "",
  save(key, reviewer) {
    sessionStorage.setItem(KEY, key);
    sessionStorage.setItem(REVIEWER, reviewer);
  },
  clear() {
    sessionStorage.removeItem(KEY);
    sessionStorage.removeItem(REVIEWER);
  },
};

// One request; the parsed JSON body, or an ApiError with the API's own message.
export async function call(method, path, body) {
  const headers = { "X-API-Key": session.key(), Accept: "application/json" };
  const init = { method, headers, credentials: "omit", cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  const data = await response.json().catch(() => null);
  if (!response.ok) {
    const error = (data && data.error) || {};
    throw new ApiError(response.status, error.code || "error",
      error.message || `${response.status} ${response.statusText}`, error.fields);
  }
  return data;
}

const id = (value) => encodeURIComponent(value);
const who = (userId) => ({ user_id: userId, reviewer_id: session.reviewer() });

export const api = {
  queue: (cursor) => call("GET", `/reviews?status=pending&limit=100${cursor ? `&cursor=${id(cursor)}` : ""}`),
  reasonCodes: () => call("GET", "/reviews/reason-codes"),
  application: (appId, userId) =>
    call("GET", `/applications/${id(appId)}?user_id=${id(userId)}`),
  claim: (appId, userId) => call("POST", `/reviews/${id(appId)}/claim`, who(userId)),
  release: (appId, userId) => call("DELETE", `/reviews/${id(appId)}/claim`, who(userId)),
  note: (appId, userId, text) =>
    call("POST", `/reviews/${id(appId)}/notes`, { ...who(userId), text }),
  review: (appId, userId, outcome, codes, note) =>
    call("POST", `/applications/${id(appId)}/review`,
      { ...who(userId), outcome, reason_codes: codes, note }),
};
