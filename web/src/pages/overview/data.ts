import { api } from "../../api/client";
import { chooseBucket, DAY } from "../../lib/range";
import { alignRows } from "../../lib/series";
import { endOfDay, startOfDay } from "../../lib/time";

export const SPARK_WIDTH = 120;

/** 24 h of one measurement, bucketed for a ~120 px sparkline. */
export async function fetchSpark(name: string, now: number, signal: AbortSignal) {
  const from = now - DAY;
  const bucket = chooseBucket(from, now, SPARK_WIDTH);
  const rows = await api.measurements({ from, to: now, names: [name], bucket, limit: 1000 }, signal);
  const a = alignRows(rows, [name]);
  return { from, to: now, x: a.x, ...a.series[0] };
}

/** Today's activity segments in the chosen time zone. */
export async function fetchToday(now: number, tz: string, signal: AbortSignal) {
  const dayStart = startOfDay(now, tz);
  const dayEnd = endOfDay(now, tz);
  const r = await api.activity(dayStart, now + 1, signal);
  return { dayStart, dayEnd, segments: r.segments };
}
