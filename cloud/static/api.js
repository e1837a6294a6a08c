// The dashboard's only door to the server: the public HTTP API with the user's bearer token.

const TOKEN_KEY = "gatehouse.token";
const EXPIRES_KEY = "gatehouse.expires";

export class ApiError extends Error {
  constructor(status, detail) {
    super(detail || `HTTP ${status}`);
    this.status = status;
  }
}

export function token() {
  const t = localStorage.getItem(TOKEN_KEY);
  const exp = Number(localStorage.getItem(EXPIRES_KEY) || 0);
  if (!t || exp * 1000 <= Date.now()) return null;
  return t;
}

export function signOut() {
  localStorage.removeItem(TOKEN_KEY);
  localStorage.removeItem(EXPIRES_KEY);
}

export async function signIn(username, password) {
  const reply = await fetch("/api/v1/auth/login", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ username, password }),
  });
  if (!reply.ok) throw new ApiError(reply.status, await detail(reply));
  const body = await reply.json();
  localStorage.setItem(TOKEN_KEY, body.access_token);
  localStorage.setItem(EXPIRES_KEY, String(body.expires_at));
}

async function detail(reply) {
  try {
    const body = await reply.json();
    if (typeof body.detail === "string") return body.detail;
    return JSON.stringify(body.detail);
  } catch {
    return reply.statusText;
  }
}

export async function api(path, { method = "GET", body, params } = {}) {
  const url = new URL(path, location.origin);
  for (const [k, v] of Object.entries(params || {})) {
    if (v === undefined || v === null || v === "") continue;
    if (Array.isArray(v)) v.forEach((x) => url.searchParams.append(k, x));
    else url.searchParams.set(k, v);
  }
  const headers = { Authorization: `Bearer ${token()}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const reply = await fetch(url, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (reply.status === 401) {
    signOut();
    location.hash = "#/login";
    throw new ApiError(401, "signed out");
  }
  if (!reply.ok) throw new ApiError(reply.status, await detail(reply));
  return reply.json();
}

// A URL that carries the token in the query, for <img> and EventSource (no headers there).
export function withToken(path) {
  const url = new URL(path, location.origin);
  url.searchParams.set("access_token", token() || "");
  return url.pathname + url.search;
}

// Upload a file as the raw request body (a report photo); answers the JSON reply.
export async function upload(path, file, params = {}) {
  const url = new URL(path, location.origin);
  for (const [k, v] of Object.entries(params)) url.searchParams.set(k, v);
  const reply = await fetch(url, {
    method: "POST",
    headers: { Authorization: `Bearer ${token()}`, "Content-Type": file.type || "application/octet-stream" },
    body: file,
  });
  if (reply.status === 401) {
    signOut();
    location.hash = "#/login";
    throw new ApiError(401, "signed out");
  }
  if (!reply.ok) throw new ApiError(reply.status, await detail(reply));
  return reply.json();
}

// The token-carrying URL of a report photo, or null for anything that is not a stored
// photo path on this server (a report's `photos` may hold any string: never send the token
// elsewhere).
export function photoUrl(ref) {
  if (typeof ref !== "string" || !/^\/api\/v1\/evidence\/[A-Za-z0-9_.\/-]+$/.test(ref)) return null;
  return withToken(ref);
}
