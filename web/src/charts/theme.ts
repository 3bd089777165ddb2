// Chart colours come from the CSS custom properties, so dark mode applies.
import { useSyncExternalStore } from "react";

export interface ChartColors {
  text: string;
  muted: string;
  grid: string;
  line1: string;
  line2: string;
  band1: string;
  band2: string;
  select: string;
}

export function readChartColors(el: Element = document.documentElement): ChartColors {
  const cs = getComputedStyle(el);
  const v = (name: string, fallback: string) => cs.getPropertyValue(name).trim() || fallback;
  return {
    text: v("--text", "#1a1a1a"),
    muted: v("--muted", "#555"),
    grid: v("--grid", "#ddd"),
    line1: v("--chart-1", "#1f5fbf"),
    line2: v("--chart-2", "#b3541e"),
    band1: v("--chart-1-band", "rgba(31,95,191,0.2)"),
    band2: v("--chart-2-band", "rgba(179,84,30,0.2)"),
    select: v("--chart-select", "rgba(0,0,0,0.1)"),
  };
}

const mq = typeof window !== "undefined" && window.matchMedia ? window.matchMedia("(prefers-color-scheme: dark)") : null;

function subscribe(cb: () => void) {
  mq?.addEventListener("change", cb);
  return () => mq?.removeEventListener("change", cb);
}

/** "dark" or "light"; charts are rebuilt when it changes. */
export function useColorScheme(): "dark" | "light" {
  return useSyncExternalStore(
    subscribe,
    () => (mq?.matches ? "dark" : "light"),
    () => "light",
  );
}
