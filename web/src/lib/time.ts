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
