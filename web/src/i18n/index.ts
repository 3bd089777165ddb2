import { useCallback, useMemo } from "react";
import { useSettings } from "../settings";
import { formatDate, formatNumber, formatValue, relativeTime, type DateStyle } from "../lib/format";
import { translate, type Key, type Vars } from "./strings";

export type { Key, Lang } from "./strings";
export type T = (key: Key, vars?: Vars) => string;

/** The translation function for the chosen language. */
export function useT(): T {
  const { lang } = useSettings().settings;
  return useCallback((key: Key, vars?: Vars) => translate(lang, key, vars), [lang]);
}

/** Formatting bound to the chosen language, time zone and units. */
export function useFormat() {
  const { lang, tz, units } = useSettings().settings;
  return useMemo(
    () => ({
      lang,
      tz,
      units,
      num: (v: number) => formatNumber(v, lang),
      value: (v: number, unit: string | null | undefined) => formatValue(v, unit, units, lang),
      date: (ms: number, style?: DateStyle) => formatDate(ms, lang, tz, style),
      ago: (ms: number, now: number) => relativeTime(ms, now, lang),
    }),
    [lang, tz, units],
  );
}
