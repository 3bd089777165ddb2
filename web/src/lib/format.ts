// Numbers, dates and relative times, always through Intl with the chosen
// language and time zone.
import { translate, type Lang } from "../i18n/strings";
import { convert, type UnitSystem } from "./units";

const locales: Record<Lang, string> = { en: "en-GB", fr: "fr-FR" };
export const localeOf = (lang: Lang): string => locales[lang];

const nfCache = new Map<string, Intl.NumberFormat>();
function nf(lang: Lang, digits: number): Intl.NumberFormat {
  const k = lang + digits;
  let f = nfCache.get(k);
  if (!f) {
    f = new Intl.NumberFormat(locales[lang], { maximumFractionDigits: digits });
    nfCache.set(k, f);
  }
  return f;
}

/** Adaptive precision: 61.5 → "61.5" / "61,5"; 12345.6 → "12,346" / "12 346". */
export function formatNumber(v: number, lang: Lang): string {
  if (!Number.isFinite(v)) return "–";
  const a = Math.abs(v);
  const digits = a >= 1000 ? 0 : a >= 10 ? 1 : a >= 0.01 || a === 0 ? 2 : 4;
  return nf(lang, digits).format(v);
}

/** Value plus unit after converting for the unit system, e.g. "72.5 °F". */
export function formatValue(v: number, unit: string | null | undefined, system: UnitSystem, lang: Lang): string {
  const c = convert(v, unit, system);
  const n = formatNumber(c.value, lang);
  return c.unit ? `${n}\u00a0${c.unit}` : n;
}

const dtCache = new Map<string, Intl.DateTimeFormat>();
function dtf(lang: Lang, tz: string, style: DateStyle): Intl.DateTimeFormat {
  const k = `${lang}|${tz}|${style}`;
  let f = dtCache.get(k);
  if (!f) {
    const base: Intl.DateTimeFormatOptions = { timeZone: tz };
    const opts: Record<DateStyle, Intl.DateTimeFormatOptions> = {
      datetime: { ...base, dateStyle: "medium", timeStyle: "short" },
      datetimesec: { ...base, dateStyle: "medium", timeStyle: "medium" },
      date: { ...base, dateStyle: "medium" },
      time: { ...base, hour: "2-digit", minute: "2-digit" },
      timesec: { ...base, hour: "2-digit", minute: "2-digit", second: "2-digit" },
      daymonth: { ...base, day: "numeric", month: "short" },
      month: { ...base, month: "short", year: "numeric" },
    };
    f = new Intl.DateTimeFormat(locales[lang], opts[style]);
    dtCache.set(k, f);
  }
  return f;
}

export type DateStyle = "datetime" | "datetimesec" | "date" | "time" | "timesec" | "daymonth" | "month";

export function formatDate(ms: number, lang: Lang, tz: string, style: DateStyle = "datetime"): string {
  if (!Number.isFinite(ms)) return "–";
  return dtf(lang, tz, style).format(new Date(ms));
}

/** "2 min ago" / "il y a 2 min". */
export function relativeTime(thenMs: number, nowMs: number, lang: Lang): string {
  const diff = nowMs - thenMs;
  if (diff < -5_000) return translate(lang, "rel_future");
  const s = Math.max(0, Math.round(diff / 1000));
  const n = (x: number) => nf(lang, 0).format(x);
  if (s < 10) return translate(lang, "rel_now");
  if (s < 60) return translate(lang, "rel_s", { n: n(s) });
  const m = Math.floor(s / 60);
  if (m < 60) return translate(lang, "rel_min", { n: n(m) });
  const h = Math.floor(m / 60);
  if (h < 48) return translate(lang, "rel_h", { n: n(h) });
  return translate(lang, "rel_d", { n: n(Math.floor(h / 24)) });
}

/** Axis labels for a time axis: times for short spans, dates for longer ones. */
export function axisDateStyle(spanMs: number): DateStyle {
  if (spanMs <= 2 * 60_000) return "timesec";
  if (spanMs <= 2 * 86_400_000) return "time";
  if (spanMs <= 120 * 86_400_000) return "daymonth";
  return "month";
}

/** min / mean / max of the finite numbers in a list (mean weighted by counts if given). */
export function stats(values: ArrayLike<number | null | undefined>, counts?: ArrayLike<number>): { min: number; mean: number; max: number; n: number } | null {
  let min = Infinity;
  let max = -Infinity;
  let sum = 0;
  let w = 0;
  let n = 0;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (v === null || v === undefined || !Number.isFinite(v)) continue;
    const c = counts ? counts[i] || 1 : 1;
    if (v < min) min = v;
    if (v > max) max = v;
    sum += v * c;
    w += c;
    n++;
  }
  return n === 0 ? null : { min, mean: sum / w, max, n };
}
