// Shape bucketed rows from /measurements into aligned arrays for uPlot.
import type { MeasurementRow } from "../api/types";

/** The fields of a /measurements row that the charts use. */
export type Row = Pick<MeasurementRow, "name" | "unit" | "time_ms" | "avg" | "min" | "max" | "count">;

export interface Aligned {
  x: number[];
  series: { name: string; unit: string | null; mean: (number | null)[]; min: (number | null)[]; max: (number | null)[]; count: number[]; points: number }[];
}

/**
 * One x array (the union of bucket starts, ascending) and per name arrays of
 * the same length; `null` where a name has no bucket at that time.
 * Rows with a non-finite time or a name not asked for are ignored.
 */
export function alignRows(rows: readonly Row[], names: readonly string[]): Aligned {
  const xs = new Set<number>();
  for (const r of rows) if (Number.isFinite(r.time_ms) && names.includes(r.name)) xs.add(r.time_ms);
  const x = [...xs].sort((a, b) => a - b);
  const idx = new Map(x.map((t, i) => [t, i]));
  const series = names.map((name) => ({
    name,
    unit: null as string | null,
    mean: new Array<number | null>(x.length).fill(null),
    min: new Array<number | null>(x.length).fill(null),
    max: new Array<number | null>(x.length).fill(null),
    count: new Array<number>(x.length).fill(0),
    points: 0,
  }));
  for (const r of rows) {
    const s = series.find((q) => q.name === r.name);
    const i = idx.get(r.time_ms);
    if (!s || i === undefined) continue;
    if (s.unit === null && r.unit) s.unit = r.unit;
    const num = (v: number | null) => (typeof v === "number" && Number.isFinite(v) ? v : null);
    s.mean[i] = num(r.avg);
    s.min[i] = num(r.min) ?? s.mean[i];
    s.max[i] = num(r.max) ?? s.mean[i];
    s.count[i] = r.count;
    if (s.mean[i] !== null) s.points++;
  }
  return { x, series };
}

/**
 * Keep at most 2 points per bucket (the min and the max, in time order) over
 * `buckets` equal slices of the time span: what a line at that width shows.
 */
export function decimateMinMax(t: number[], v: number[], buckets: number): [number[], number[]] {
  const n = t.length;
  if (n <= 2 * buckets || buckets < 1) return [t, v];
  const t0 = t[0];
  const span = t[n - 1] - t0 || 1;
  const ot: number[] = [];
  const ov: number[] = [];
  let i = 0;
  while (i < n) {
    const b = Math.min(buckets - 1, Math.floor(((t[i] - t0) / span) * buckets));
    let lo = i;
    let hi = i;
    let j = i + 1;
    while (j < n && Math.min(buckets - 1, Math.floor(((t[j] - t0) / span) * buckets)) === b) {
      if (v[j] < v[lo]) lo = j;
      if (v[j] > v[hi]) hi = j;
      j++;
    }
    const first = Math.min(lo, hi);
    const second = Math.max(lo, hi);
    ot.push(t[first]);
    ov.push(v[first]);
    if (second !== first) {
      ot.push(t[second]);
      ov.push(v[second]);
    }
    i = j;
  }
  return [ot, ov];
}
