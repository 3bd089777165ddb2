// Explore's view lives in the query string: ?m=hr&m2=steps&from=MS&to=MS.
import { DAY, MAX_SPAN_MS, type Range } from "./range";

export interface ExploreState extends Range {
  m: string | null;
  m2: string | null;
}

const NAME_RE = /^[^\u0000-\u001f]{1,200}$/;

function parseName(v: string | null): string | null {
  return v !== null && NAME_RE.test(v) ? v : null;
}

function parseMs(v: string | null): number | null {
  if (v === null || !/^-?\d{1,16}$/.test(v)) return null;
  const n = Number(v);
  return Number.isSafeInteger(n) ? n : null;
}

/** Decode, ignoring bad values: a bad or missing range becomes the last 24 h. */
export function decodeExplore(search: string, now: number): ExploreState {
  const q = new URLSearchParams(search);
  const m = parseName(q.get("m"));
  let m2 = parseName(q.get("m2"));
  if (m2 === m) m2 = null;
  let from = parseMs(q.get("from"));
  let to = parseMs(q.get("to"));
  if (from === null || to === null || to <= from || to - from > MAX_SPAN_MS) {
    const span = from !== null && to !== null && to > from ? Math.min(to - from, MAX_SPAN_MS) : DAY;
    to = to ?? now;
    from = to - span;
  }
  return { m, m2, from, to };
}

export function encodeExplore(s: ExploreState): string {
  const q = new URLSearchParams();
  if (s.m) q.set("m", s.m);
  if (s.m2 && s.m2 !== s.m) q.set("m2", s.m2);
  q.set("from", String(Math.round(s.from)));
  q.set("to", String(Math.round(s.to)));
  return "?" + q.toString();
}
