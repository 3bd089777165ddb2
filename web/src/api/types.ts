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
