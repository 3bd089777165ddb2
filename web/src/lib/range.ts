// Time ranges for Explore: presets, bucket choice, pan and zoom arithmetic.

export const MINUTE = 60_000;
export const HOUR = 60 * MINUTE;
export const DAY = 24 * HOUR;

export const PRESETS = [
  { key: "1h", ms: HOUR },
  { key: "6h", ms: 6 * HOUR },
  { key: "24h", ms: DAY },
  { key: "7d", ms: 7 * DAY },
  { key: "30d", ms: 30 * DAY },
  { key: "1y", ms: 365 * DAY },
] as const;

export type PresetKey = (typeof PRESETS)[number]["key"];

/** The smallest span one can zoom into. */
export const MIN_SPAN_MS = 10_000;
/** The largest span one can zoom out to. */
export const MAX_SPAN_MS = 10 * 365 * DAY;

export interface Range {
  from: number;
  to: number;
}

export function presetRange(key: PresetKey, now: number): Range {
  const p = PRESETS.find((x) => x.key === key) ?? PRESETS[2];
  return { from: now - p.ms, to: now };
}

/** The preset whose span equals the range's, if any (for aria-pressed). */
export function matchingPreset(r: Range): PresetKey | undefined {
  return PRESETS.find((p) => p.ms === r.to - r.from)?.key;
}

/** bucket = max(1000, ceil(span / (width / 2))): at most ~2 points per pixel. */
/**
 * Bucket steps: round numbers of seconds, minutes, hours and days. Every step
 * from a minute up is a whole number of minutes, which the store answers from
 * its per-minute rollup instead of the raw rows (docs/store.md): for 30 days
 * of 1 Hz data, ~20 ms instead of ~2 s.
 */
export const BUCKET_STEPS: readonly number[] = [
  1, 2, 5, 10, 15, 30, 60, 2 * 60, 5 * 60, 10 * 60, 15 * 60, 30 * 60,
  3600, 2 * 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86_400,
].map((s) => s * 1000);

/**
 * The bucket for a chart `widthPx` wide: at most one bucket per two pixels,
 * rounded up to the next step of BUCKET_STEPS (beyond a day, whole days).
 */
export function chooseBucket(from: number, to: number, widthPx: number): number {
  const span = Math.max(0, to - from);
  const w = Math.max(2, Math.floor(widthPx));
  const least = Math.max(1000, Math.ceil(span / (w / 2)));
  const step = BUCKET_STEPS.find((s) => s >= least);
  return step ?? Math.ceil(least / DAY) * DAY;
}

/** Shift by half the span; dir = -1 earlier, +1 later. */
export function pan(r: Range, dir: -1 | 1): Range {
  const half = Math.round((r.to - r.from) / 2);
  return { from: r.from + dir * half, to: r.to + dir * half };
}

/** Zoom around the centre by `factor` (>1 zooms out), within the span limits. */
export function zoom(r: Range, factor: number): Range {
  const span = r.to - r.from;
  const next = Math.min(MAX_SPAN_MS, Math.max(MIN_SPAN_MS, Math.round(span * factor)));
  const mid = r.from + span / 2;
  const from = Math.round(mid - next / 2);
  return { from, to: from + next };
}

/** A drag selection from a to b (either order) becomes the new range. */
export function zoomTo(a: number, b: number): Range {
  let from = Math.round(Math.min(a, b));
  let to = Math.round(Math.max(a, b));
  if (to - from < MIN_SPAN_MS) {
    const mid = (from + to) / 2;
    from = Math.round(mid - MIN_SPAN_MS / 2);
    to = from + MIN_SPAN_MS;
  }
  return { from, to };
}
