// Time-zone arithmetic with Intl only (no date library).

const dtfCache = new Map<string, Intl.DateTimeFormat>();

function partsFormatter(tz: string): Intl.DateTimeFormat {
  let f = dtfCache.get(tz);
  if (!f) {
    f = new Intl.DateTimeFormat("en-US", {
      timeZone: tz,
      hourCycle: "h23",
      year: "numeric",
      month: "2-digit",
      day: "2-digit",
      hour: "2-digit",
      minute: "2-digit",
      second: "2-digit",
    });
    dtfCache.set(tz, f);
  }
  return f;
}

function wallClock(ms: number, tz: string): { y: number; mo: number; d: number; h: number; mi: number; s: number } {
  const p: Record<string, number> = {};
  for (const part of partsFormatter(tz).formatToParts(new Date(ms))) {
    if (part.type !== "literal") p[part.type] = Number(part.value);
  }
  return { y: p.year, mo: p.month, d: p.day, h: p.hour % 24, mi: p.minute, s: p.second };
}

/** Offset of `tz` from UTC at instant `ms`, in ms (e.g. +3 600 000 for Paris in winter). */
export function tzOffsetMs(ms: number, tz: string): number {
  const w = wallClock(ms, tz);
  const asUtc = Date.UTC(w.y, w.mo - 1, w.d, w.h, w.mi, w.s);
  return asUtc - Math.floor(ms / 1000) * 1000;
}

/** The instant of local midnight that starts the day containing `ms` in `tz`. */
export function startOfDay(ms: number, tz: string): number {
  const w = wallClock(ms, tz);
  const midnightUtc = Date.UTC(w.y, w.mo - 1, w.d);
  let guess = midnightUtc - tzOffsetMs(midnightUtc, tz);
  // Correct once more in case the offset differs at the guessed instant (DST).
  guess = midnightUtc - tzOffsetMs(guess, tz);
  return guess;
}

/** Start of the next local day (handles 23 h and 25 h days). */
export function endOfDay(ms: number, tz: string): number {
  const start = startOfDay(ms, tz);
  return startOfDay(start + 36 * 3_600_000, tz);
}

/** True when `tz` is a zone this browser knows. */
export function isValidTimeZone(tz: string): boolean {
  try {
    new Intl.DateTimeFormat("en", { timeZone: tz });
    return true;
  } catch {
    return false;
  }
}

/**
 * The instant a wall-clock time `YYYY-MM-DDTHH:MM[:SS]` (what <input type="datetime-local">
 * gives) names in `tz`; null when it is no such time. A time skipped by a DST change lands an
 * hour later, as clocks do.
 */
export function wallTimeToMs(wall: string, tz: string): number | null {
  const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?$/.exec(wall);
  if (!m) return null;
  const [y, mo, d, h, mi, s] = m.slice(1, 7).map((x) => Number(x ?? 0));
  const asUtc = Date.UTC(y, mo - 1, d, h, mi, s);
  const back = new Date(asUtc);
  // Date.UTC rolls 2026-02-30 over to March: refuse it instead.
  if (back.getUTCFullYear() !== y || back.getUTCMonth() !== mo - 1 || back.getUTCDate() !== d || h > 23 || mi > 59 || s > 59) {
    return null;
  }
  // As startOfDay: guess with the offset at the wall time read as UTC, then correct once with
  // the offset at the guess (they differ only near a DST change).
  const guess = asUtc - tzOffsetMs(asUtc, tz);
  return asUtc - tzOffsetMs(guess, tz);
}
