// Layout of today's activity timeline: segments clipped to the day, as
// percentages of its width, plus minutes per activity for the legend.

export interface SegmentIn {
  activity: string;
  start_ms: number;
  end_ms: number;
  device?: string;
  confidence?: number;
}

export interface SegmentOut {
  activity: string;
  start: number;
  end: number;
  leftPct: number;
  widthPct: number;
}

export const ACTIVITIES = ["walking", "walking_upstairs", "walking_downstairs", "sitting", "standing", "laying"] as const;

export function layoutTimeline(segments: readonly SegmentIn[], dayStart: number, dayEnd: number): SegmentOut[] {
  const span = dayEnd - dayStart;
  if (!(span > 0)) return [];
  const out: SegmentOut[] = [];
  for (const s of segments) {
    if (!Number.isFinite(s.start_ms) || !Number.isFinite(s.end_ms)) continue;
    const start = Math.max(dayStart, Math.min(s.start_ms, s.end_ms));
    const end = Math.min(dayEnd, Math.max(s.start_ms, s.end_ms));
    if (end <= start) continue;
    out.push({
      activity: s.activity,
      start,
      end,
      leftPct: ((start - dayStart) / span) * 100,
      widthPct: ((end - start) / span) * 100,
    });
  }
  out.sort((a, b) => a.start - b.start);
  return out;
}

/** Minutes per activity, in a stable order (known activities first). */
export function minutesByActivity(segs: readonly SegmentOut[]): [string, number][] {
  const m = new Map<string, number>();
  for (const s of segs) m.set(s.activity, (m.get(s.activity) ?? 0) + (s.end - s.start) / 60_000);
  const order = (a: string) => {
    const i = (ACTIVITIES as readonly string[]).indexOf(a);
    return i < 0 ? ACTIVITIES.length : i;
  };
  return [...m.entries()].sort((a, b) => order(a[0]) - order(b[0]) || a[0].localeCompare(b[0]));
}
