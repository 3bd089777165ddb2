// SenML (RFC 8428) JSON resolution: base fields, relative times, bad input
// skipped without throwing. Pure; used by the Live page.

export interface SenmlPoint {
  name: string;
  unit?: string;
  /** Unix time in ms. */
  time_ms: number;
  value?: number;
  text?: string;
  bool?: boolean;
  data?: string;
  sum?: number;
}

/** Times at or below 2^28 s are relative to "now" (RFC 8428 §4.5.3). */
const RELATIVE_LIMIT_S = 2 ** 28;

const isNum = (x: unknown): x is number => typeof x === "number" && Number.isFinite(x);
const isStr = (x: unknown): x is string => typeof x === "string";

/**
 * Resolve a SenML pack into absolute records.
 * `input` may be the JSON text or the parsed value; `nowMs` anchors relative times.
 * Records without a name or without any value are dropped; a pack that is not
 * an array (or not valid JSON) resolves to [].
 */
export function resolveSenml(input: unknown, nowMs: number): SenmlPoint[] {
  let pack: unknown = input;
  if (typeof input === "string") {
    try {
      pack = JSON.parse(input);
    } catch {
      return [];
    }
  }
  if (!Array.isArray(pack)) return [];

  let bn = "";
  let bt = 0;
  let bu: string | undefined;
  let bv = 0;
  let bs = 0;
  const out: SenmlPoint[] = [];

  for (const rec of pack) {
    if (rec === null || typeof rec !== "object" || Array.isArray(rec)) continue;
    const r = rec as Record<string, unknown>;
    // Base fields apply to this record and every later one.
    if (isStr(r.bn)) bn = r.bn;
    if (isNum(r.bt)) bt = r.bt;
    if (isStr(r.bu)) bu = r.bu;
    if (isNum(r.bv)) bv = r.bv;
    if (isNum(r.bs)) bs = r.bs;

    const name = bn + (isStr(r.n) ? r.n : "");
    if (name === "") continue;

    const t = isNum(r.t) ? r.t : 0;
    const abs = bt + t;
    const timeMs = abs <= RELATIVE_LIMIT_S ? nowMs + abs * 1000 : abs * 1000;
    if (!Number.isFinite(timeMs)) continue;

    const p: SenmlPoint = { name, time_ms: Math.round(timeMs) };
    const unit = isStr(r.u) ? r.u : bu;
    if (unit !== undefined) p.unit = unit;

    let has = false;
    if (isNum(r.v)) {
      p.value = bv + r.v;
      has = true;
    } else if (isStr(r.vs)) {
      p.text = r.vs;
      has = true;
    } else if (typeof r.vb === "boolean") {
      p.bool = r.vb;
      has = true;
    } else if (isStr(r.vd)) {
      p.data = r.vd;
      has = true;
    }
    if (isNum(r.s)) {
      p.sum = bs + r.s;
      has = true;
    }
    if (has) out.push(p);
  }
  return out;
}

/** The number to chart for a point: its value, else its sum, else 1/0 for booleans. */
export function numericValue(p: SenmlPoint): number | undefined {
  if (p.value !== undefined) return p.value;
  if (p.sum !== undefined) return p.sum;
  if (p.bool !== undefined) return p.bool ? 1 : 0;
  return undefined;
}
