// Response and request shapes of the dashboard API (see the API contract).

export interface Problem {
  type?: string;
  title?: string;
  status?: number;
  detail?: string;
}

export interface SignupRequest {
  name: string;
  password: string;
}
export interface SignupResponse {
  owner: string;
}
export interface LoginRequest {
  name: string;
  password: string;
  cookie: true;
}
export interface LoginResponse {
  owner: string;
  csrf: string;
  expires_in_s: number;
}
export interface SessionResponse {
  owner: string;
  csrf: string;
  expires_ms: number;
}

export interface Device {
  id: string;
  name: string;
  created_ms: number;
  revoked_ms: number | null;
  last_seen_ms: number | null;
  messages_last_hour: number;
}
export interface CreateDeviceRequest {
  name: string;
}
export interface CreateDeviceResponse {
  id: string;
  name: string;
  token: string;
  topic: string;
}
export interface RotateTokenResponse {
  id: string;
  token: string;
}

export interface Info {
  mqtt: { host: string; port: number; ws_url: string | null };
  version: string;
}

export interface SummaryItem {
  name: string;
  unit: string | null;
  latest_value: number | null;
  latest_time_ms: number | null;
  device: string | null;
  count: number;
}

export interface MeasurementRow {
  name: string;
  unit: string | null;
  time_ms: number;
  avg: number | null;
  min: number | null;
  max: number | null;
  count: number;
  device: string | null;
  text: string | null;
  bool: boolean | null;
  data: string | null;
}

export interface DeadLetter {
  device: string;
  message_id: string | number;
  topic: string;
  received_ms: number;
  reason: string;
  payload: string;
  encoding?: string;
}

export interface ActivitySegment {
  device: string;
  activity: string;
  start_ms: number;
  end_ms: number;
  confidence: number;
  windows: number;
  model_version: string | number;
  start: string;
  end: string;
}
export interface ActivityResponse {
  segments: ActivitySegment[];
  truncated: boolean;
}
export interface ActivityDailyResponse {
  days: { date: string; minutes: Record<string, number> }[];
  truncated: boolean;
}
export interface ActivitySettings {
  enabled: boolean;
}

/** One SSE `message` event on /api/v1/live. */
export interface LiveEvent {
  topic: string;
  device: string;
  received_ms: number;
  payload: string;
  encoding?: string;
}

export type ExportFormat = "senml" | "csv" | "parquet";

// ---- owner rights: consent, audit log, packs, erasure (docs/api.md) ----

export type ConsentStatus = "pending" | "granted" | "refused" | "revoked";

export interface ConsentReceipt {
  receipt_id: string;
  status: ConsentStatus;
  created_ms: number;
  /** The receipt as a compact JWS. */
  jws: string;
}
export interface Consent {
  id: string;
  service: string;
  owner: string;
  types: string[];
  /** A DPV term, e.g. "dpv:ResearchAndDevelopment". */
  purpose: string;
  purpose_category: string | null;
  retention_days: number;
  third_parties: string[];
  status: ConsentStatus;
  created_ms: number;
  decided_ms: number | null;
  /** Oldest first: the grant or refusal, then a revocation. */
  receipts: ConsentReceipt[];
}
export interface ConsentPage {
  consents: Consent[];
  /** `before` for the next (older) page; null on the last. */
  next_before: number | null;
}

export interface AuditEntry {
  id: number;
  /** "service" or "admin". */
  actor_kind: string;
  actor: string;
  /** "mqtt", "api" or "pack". */
  channel: string;
  detail: string;
  /** Empty when the read was not of one device. */
  device: string;
  consent_id: string | null;
  count: number;
  first_ms: number;
  last_ms: number;
}
export interface AuditPage {
  entries: AuditEntry[];
  next_before: number | null;
}

export interface PackOffer {
  id: string;
  buyer: string;
  title: string;
  measurement: string;
  purpose: string;
  /** First and last day, YYYY-MM-DD (UTC). */
  from: string;
  to: string;
  lower: number;
  upper: number;
  epsilon: number;
  min_participants: number;
  cohort: { age_band: string | null; region: string | null };
  price_cents: number;
  currency: string;
  created_ms: number;
  fits_cohort: boolean;
  /** "joined", "withdrawn" or null (never joined). */
  status: "joined" | "withdrawn" | null;
  receipt: string | null;
  withdraw_receipt: string | null;
}
export interface PackDecision {
  pack: string;
  status: "joined" | "withdrawn";
  receipt: string;
}
export interface PackSettingsBody {
  budget_ceiling: number;
  age_band: string | null;
  region: string | null;
}
export interface PackSettings extends PackSettingsBody {
  spent: number;
  left: number;
}
export interface EarningsEntry {
  pack: string;
  seq: number;
  epsilon: number;
  amount_cents: number;
  currency: string;
  at_ms: number;
}
export interface Earnings {
  entries: EarningsEntry[];
  totals_cents: Record<string, number>;
  epsilon_spent: number;
}

export interface EraseRequest {
  device?: string;
  from_ms?: number;
  to_ms?: number;
}
export interface Erased {
  measurements: number;
  dead_letters: number;
  activity_segments: number;
  retained: number;
  sessions: number;
  /** null when the node keeps no archive. */
  archive: { files_deleted: number; files_rewritten: number; rows: number } | null;
  elapsed_ms: number;
}
