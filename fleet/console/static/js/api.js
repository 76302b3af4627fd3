// The console's only way to the fleet: same-origin fetch with the session cookie, the
// CSRF token on every state-changing request, and refusals turned into ApiError with the
// server's own words. Nothing here keeps the API token: it is sent once, to open a session.

let csrf = null;
let onSessionLost = () => {};

export class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
    this.detail = detail;
  }
}

/** Called with no argument when the server answers 401 (the session is over). */
export function whenSessionLost(callback) {
  onSessionLost = callback;
}

async function request(method, path, { body, params } = {}) {
  let url = path;
  if (params) {
    const query = new URLSearchParams();
    for (const [key, value] of Object.entries(params)) {
      if (value !== undefined && value !== null && value !== "") query.set(key, String(value));
    }
    const text = query.toString();
    if (text) url += `?${text}`;
  }
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && csrf) headers["X-CSRF-Token"] = csrf;
  const answer = await fetch(url, {
    method,
    headers,
    credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (answer.status === 204) return null;
  const data = await answer.json().catch(() => null);
  if (!answer.ok) {
    const detail = typeof data?.detail === "string" ? data.detail : `HTTP ${answer.status}`;
    if (answer.status === 401 && !path.startsWith("/console/session")) onSessionLost();
    throw new ApiError(answer.status, detail);
  }
  return data;
}

export const api = {
  get: (path, params) => request("GET", path, { params }),
  post: (path, body = {}) => request("POST", path, { body }),
};

/** The signed-in session ({name, role, csrf}), or null when there is none. */
export async function currentSession() {
  try {
    const session = await request("GET", "/console/session");
    csrf = session.csrf;
    return session;
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) return null;
    throw error;
  }
}

export async function signIn(token) {
  const session = await request("POST", "/console/session", { body: { token } });
  csrf = session.csrf;
  return session;
}

export async function signOut() {
  try {
    await request("DELETE", "/console/session");
  } finally {
    csrf = null;
  }
}

const RANKS = { viewer: 0, operator: 1, configurator: 2, admin: 3 };

/** True when `role` may do what `needed` may (the server checks it again). */
export function roleAtLeast(role, needed) {
  return (RANKS[role] ?? -1) >= RANKS[needed];
}
