// A small uPlot line for one live series; data pushed in via `version` bumps
// (at most once per animation frame by the Live page).
import { useEffect, useRef } from "react";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import type { Lang } from "../i18n/strings";
import { formatDate, formatNumber } from "../lib/format";
import { readChartColors, useColorScheme } from "./theme";
import { useWidth } from "./useWidth";

const WINDOW_MS = 120_000;

interface Props {
  getData: () => [number[], number[]];
  version: number;
  lang: Lang;
  tz: string;
  height?: number;
}

export function LiveChart({ getData, version, lang, tz, height = 140 }: Props) {
  const wrap = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const width = useWidth(wrap, 300);
  const scheme = useColorScheme();
  const get = useRef(getData);
  get.current = getData;

  useEffect(() => {
    const el = wrap.current;
    if (!el) return;
    const c = readChartColors(el);
    const axis = { stroke: c.muted, grid: { stroke: c.grid, width: 1 }, ticks: { stroke: c.grid, width: 1 }, font: "11px system-ui, sans-serif" };
    const u = new uPlot(
      {
        width: Math.max(150, el.clientWidth),
        height,
        ms: 1,
        legend: { show: false },
        cursor: { show: false },
        // Dots while there are few points (a line needs two), none once it is a line.
        series: [{}, { stroke: c.line1, width: 1.5, points: { show: (_u, _s, i0, i1) => i1 - i0 < 30, size: 5, fill: c.line1 } }],
        // A sliding two-minute window ending at the newest point.
        scales: {
          x: {
            time: true,
            range: (_u, _min, max) => (max === null || max === undefined ? [Date.now() - WINDOW_MS, Date.now()] : [max - WINDOW_MS, max]),
          },
        },
        axes: [
          { ...axis, size: 32, values: (_u, s) => s.map((v) => formatDate(v, lang, tz, "timesec")) },
          { ...axis, size: 48, values: (_u, s) => s.map((v) => formatNumber(v, lang)) },
        ],
      },
      get.current(),
      el,
    );
    plot.current = u;
    return () => {
      u.destroy();
      plot.current = null;
    };
  }, [scheme, lang, tz, height]);

  useEffect(() => {
    plot.current?.setData(get.current());
  }, [version]);

  useEffect(() => {
    plot.current?.setSize({ width: Math.max(150, width), height });
  }, [width, height]);

  return <div ref={wrap} className="live-chart" aria-hidden="true" />;
}
