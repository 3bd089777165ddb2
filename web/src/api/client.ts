// The one typed HTTP client. Same origin, cookie session, CSRF header on
// non-GET, problem+json errors. A 401 pauses the request until the person
// signs in again (the page stays mounted, so typed input is kept), then it is
// retried. A GET that cannot reach the server is retried with a banner shown.
import type {
  ActivityResponse,
  ActivitySettings,
  AuditPage,
  Consent,
  ConsentPage,
  CreateDeviceResponse,
  DeadLetter,
  Device,
  Earnings,
  Erased,
  EraseRequest,
  ExportFormat,
  Info,
  LoginResponse,
  MeasurementRow,
  PackDecision,
  PackOffer,
  PackSettings,
  PackSettingsBody,
  Problem,
  RotateTokenResponse,
  SessionResponse,
  SignupResponse,
  SummaryItem,
} from "./types";

export class ApiError extends Error {
  readonly status: number;
  readonly title: string;
  readonly detail: string;
  /** Seconds, from Retry-After on 429. */
  readonly retryAfter: number | null;
  constructor(status: number, title: string, detail: string, retryAfter: number | null = null) {
    super(detail || title || `HTTP ${status}`);
    this.name = "ApiError";
    this.status = status;
    this.title = title;
    this.detail = detail;
    this.retryAfter = retryAfter;
  }
}

/** status 0 = the server could not be reached. */
export const isNetworkError = (e: unknown): boolean => e instanceof ApiError && e.status === 0;
export const isAbort = (e: unknown): boolean => e instanceof DOMException && e.name === "AbortError";

// ---- small shared state: CSRF token (memory only), network banner, re-auth ----

let csrf: string | null = null;
export function setCsrf(token: string | null): void {
  csrf = token;
}

type Listener = () => void;
function store<T>(initial: T) {
  let value = initial;
  const ls = new Set<Listener>();
  return {
    get: () => value,
    set(v: T) {
      if (v !== value) {
        value = v;
        ls.forEach((l) => l());
      }
    },
    subscribe(l: Listener) {
      ls.add(l);
      return () => void ls.delete(l);
    },
  };
}

/** True while some GET is retrying because fetch threw. */
export const networkDown = store(false);

/**
 * Set by the session layer: called on a 401 from an authenticated request;
 * resolves once the person has signed in again.
 */
let onUnauthorized: (() => Promise<void>) | null = null;
export function setUnauthorizedHandler(h: (() => Promise<void>) | null): void {
  onUnauthorized = h;
}

// ---- request ----

export interface RequestOptions {
  body?: unknown;
  signal?: AbortSignal;
  /** false for the session endpoints themselves: a 401 is just an answer. */
  reauth?: boolean;
}

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve, reject) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener(
      "abort",
      () => {
        clearTimeout(t);
        reject(new DOMException("Aborted", "AbortError"));
      },
      { once: true },
    );
  });

async function toApiError(res: Response): Promise<ApiError> {
  let p: Problem = {};
  try {
    const text = await res.text();
    if (text) p = JSON.parse(text) as Problem;
  } catch {
    /* not JSON: keep the status line */
  }
  const ra = res.headers.get("Retry-After");
  const retryAfter = ra !== null && /^\d+$/.test(ra.trim()) ? Number(ra.trim()) : null;
  return new ApiError(res.status, p.title ?? res.statusText, p.detail ?? "", retryAfter);
}

export async function request<T>(method: string, path: string, opts: RequestOptions = {}): Promise<T> {
  const { body, signal, reauth = true } = opts;
  let delay = 1000;
  for (;;) {
    const headers: Record<string, string> = { Accept: "application/json, application/problem+json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (method !== "GET" && method !== "HEAD" && csrf) headers["X-CSRF-Token"] = csrf;
    let res: Response;
    try {
      res = await fetch(path, {
        method,
        headers,
        credentials: "same-origin",
        body: body === undefined ? undefined : JSON.stringify(body),
        signal,
      });
    } catch (e) {
      if (isAbort(e) || signal?.aborted) throw e;
      if (method !== "GET") throw new ApiError(0, "Network error", "");
      networkDown.set(true);
      await sleep(delay, signal);
      delay = Math.min(delay * 2, 10_000);
      continue;
    }
    networkDown.set(false);
    if (res.status === 401 && reauth && onUnauthorized) {
      await onUnauthorized();
      if (signal?.aborted) throw new DOMException("Aborted", "AbortError");
      continue;
    }
    if (!res.ok) throw await toApiError(res);
    if (res.status === 204) return undefined as T;
    const text = await res.text();
    return (text ? JSON.parse(text) : undefined) as T;
  }
}

const get = <T>(path: string, signal?: AbortSignal) => request<T>("GET", path, { signal });

function qs(params: Record<string, string | number | undefined>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined) q.set(k, String(v));
  return q.toString();
}

// ---- endpoints ----

export const api = {
  session: (signal?: AbortSignal) => request<SessionResponse>("GET", "/api/v1/session", { signal, reauth: false }),
  login: (name: string, password: string) =>
    request<LoginResponse>("POST", "/api/v1/login", { body: { name, password, cookie: true }, reauth: false }),
  signup: (name: string, password: string) =>
    request<SignupResponse>("POST", "/api/v1/signup", { body: { name, password }, reauth: false }),
  logout: () => request<void>("POST", "/api/v1/logout", { reauth: false }),

  info: (signal?: AbortSignal) => get<Info>("/api/v1/info", signal),
  devices: (signal?: AbortSignal) => get<Device[]>("/api/v1/devices", signal),
  createDevice: (name: string) => request<CreateDeviceResponse>("POST", "/api/v1/devices", { body: { name } }),
  revokeDevice: (id: string) => request<void>("DELETE", `/api/v1/devices/${encodeURIComponent(id)}`),
  rotateToken: (id: string) => request<RotateTokenResponse>("POST", `/api/v1/devices/${encodeURIComponent(id)}/token`),

  summary: (signal?: AbortSignal) => get<SummaryItem[]>("/api/v1/summary", signal),
  measurements: (
    p: { from: number; to: number; names: string[]; bucket?: number; limit?: number },
    signal?: AbortSignal,
  ) =>
    get<MeasurementRow[]>(
      "/api/v1/measurements?" +
        qs({ from: Math.round(p.from), to: Math.round(p.to), names: p.names.join(","), bucket: p.bucket, limit: p.limit }),
      signal,
    ),
  deadLetters: (limit = 100, signal?: AbortSignal) => get<DeadLetter[]>("/api/v1/dead-letters?" + qs({ limit }), signal),
  activity: (from: number, to: number, signal?: AbortSignal) =>
    get<ActivityResponse>("/api/v1/activity?" + qs({ from: Math.round(from), to: Math.round(to), limit: 10000 }), signal),
  activitySettings: (signal?: AbortSignal) => get<ActivitySettings>("/api/v1/activity/settings", signal),
  setActivitySettings: (s: ActivitySettings) => request<ActivitySettings>("PUT", "/api/v1/activity/settings", { body: s }),

  consents: (before?: number, signal?: AbortSignal) => get<ConsentPage>("/api/v1/consents?" + qs({ limit: 50, before }), signal),
  grantConsent: (id: string) => request<Consent>("POST", `/api/v1/consents/${encodeURIComponent(id)}/grant`),
  refuseConsent: (id: string) => request<Consent>("POST", `/api/v1/consents/${encodeURIComponent(id)}/refuse`),
  revokeConsent: (id: string) => request<Consent>("POST", `/api/v1/consents/${encodeURIComponent(id)}/revoke`),
  audit: (before?: number, signal?: AbortSignal) => get<AuditPage>("/api/v1/audit?" + qs({ limit: 50, before }), signal),

  packs: (signal?: AbortSignal) => get<PackOffer[]>("/api/v1/packs", signal),
  joinPack: (id: string) => request<PackDecision>("POST", `/api/v1/packs/${encodeURIComponent(id)}/join`),
  withdrawPack: (id: string) => request<PackDecision>("POST", `/api/v1/packs/${encodeURIComponent(id)}/withdraw`),
  packSettings: (signal?: AbortSignal) => get<PackSettings>("/api/v1/packs/settings", signal),
  setPackSettings: (s: PackSettingsBody) => request<PackSettings>("PUT", "/api/v1/packs/settings", { body: s }),
  earnings: (signal?: AbortSignal) => get<Earnings>("/api/v1/packs/earnings", signal),

  erase: (what: EraseRequest) => request<Erased>("POST", "/api/v1/erasures", { body: what }),
  deleteAccount: (confirm: string) => request<Erased>("DELETE", "/api/v1/account", { body: { confirm } }),

  /** A decision's signed receipt as a file (application/jose), for a download link. */
  receiptUrl: (consent: string, receipt: string) =>
    `/api/v1/consents/${encodeURIComponent(consent)}/receipts/${encodeURIComponent(receipt)}`,
  exportUrl: (format: ExportFormat) => "/api/v1/export?" + qs({ format }),
  takeoutUrl: "/api/v1/takeout",
  liveUrl: "/api/v1/live",
};
