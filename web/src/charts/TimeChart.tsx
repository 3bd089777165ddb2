// uPlot wrapper for Explore: per measurement a mean line over a min–max band,
// an optional second measurement on a right-hand axis, drag-select on x to
// zoom. Colours from CSS variables, axis labels through Intl.
import { useEffect, useRef } from "react";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import type { Lang } from "../i18n/strings";
import { axisDateStyle, formatDate, formatNumber } from "../lib/format";
import { readChartColors, useColorScheme } from "./theme";

export interface ChartSeries {
  label: string;
  unit: string;
  mean: (number | null | undefined)[];
  min: (number | null | undefined)[];
  max: (number | null | undefined)[];
}

interface Props {
  x: number[];
  series: ChartSeries[];
  from: number;
  to: number;
  width: number;
  height: number;
  lang: Lang;
  tz: string;
  onZoom: (a: number, b: number) => void;
  /** Called after each completed draw with the number of x points drawn. */
  onDrawn: (points: number) => void;
}

export function TimeChart({ x, series, from, to, width, height, lang, tz, onZoom, onDrawn }: Props) {
  const host = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const readout = useRef<HTMLParagraphElement>(null);
  const rangeRef = useRef({ from, to });
  rangeRef.current = { from, to };
  const cb = useRef({ onZoom, onDrawn });
  cb.current = { onZoom, onDrawn };
  const scheme = useColorScheme();
  const n = series.length;
  const labels = series.map((s) => `${s.label} (${s.unit})`).join("|");
  const dataRef = useRef<uPlot.AlignedData>([[]]);
  dataRef.current = [x, ...series.flatMap((s) => [s.mean, s.min, s.max])] as uPlot.AlignedData;

  // (Re)build the plot when its structure, theme or locale changes.
  useEffect(() => {
    const el = host.current;
    if (!el) return;
    const c = readChartColors(el);
    const lines = [c.line1, c.line2];
    const bands = [c.band1, c.band2];
    const units = labels.split("|");
    const sers: uPlot.Series[] = [{}];
    const bandDefs: uPlot.Band[] = [];
    for (let i = 0; i < n; i++) {
      const scale = i === 0 ? "y" : "y2";
      const base = sers.length;
      sers.push(
        { label: units[i], scale, stroke: lines[i], width: 2, points: { show: false }, spanGaps: false },
        { label: "min", scale, stroke: "transparent", width: 0, points: { show: false } },
        { label: "max", scale, stroke: "transparent", width: 0, points: { show: false } },
      );
      bandDefs.push({ series: [base + 2, base + 1], fill: bands[i] });
    }
    const axisCommon = {
      stroke: c.muted,
      grid: { stroke: c.grid, width: 1 },
      ticks: { stroke: c.grid, width: 1 },
      font: "12px system-ui, sans-serif",
    };
    const numValues = (_u: uPlot, splits: number[]) => splits.map((v) => formatNumber(v, lang));
    const axes: uPlot.Axis[] = [
      {
        ...axisCommon,
        values: (_u, splits) => {
          const r = rangeRef.current;
          const style = axisDateStyle(r.to - r.from);
          return splits.map((v) => formatDate(v, lang, tz, style));
        },
      },
    ];
    const unitOf = (i: number) => units[i].replace(/^.* \((.*)\)$/, "$1");
    const labelFont = "12px system-ui, sans-serif";
    if (n > 0) axes.push({ ...axisCommon, scale: "y", values: numValues, size: 56, label: unitOf(0), labelSize: 18, labelFont });
    if (n > 1) axes.push({ ...axisCommon, scale: "y2", side: 1, values: numValues, size: 56, grid: { show: false }, label: unitOf(1), labelSize: 18, labelFont });

    const opts: uPlot.Options = {
      width: Math.max(200, width),
      height,
      ms: 1,
      series: sers,
      bands: bandDefs,
      axes,
      legend: { show: false },
      scales: {
        x: { time: true, range: () => [rangeRef.current.from, rangeRef.current.to] },
        y: { auto: true },
        y2: { auto: true },
      },
      cursor: { drag: { x: true, y: false, setScale: false }, points: { show: false } },
      select: { show: true, left: 0, top: 0, width: 0, height: 0 },
      hooks: {
        setSelect: [
          (u) => {
            const s = u.select;
            if (s.width > 4) {
              const a = u.posToVal(s.left, "x");
              const b = u.posToVal(s.left + s.width, "x");
              u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
              cb.current.onZoom(a, b);
            }
          },
        ],
        setCursor: [
          (u) => {
            const r = readout.current;
            if (!r) return;
            const i = u.cursor.idx;
            if (i === null || i === undefined) {
              r.textContent = "\u00a0";
              return;
            }
            const xs = u.data[0][i];
            const parts = [formatDate(xs, lang, tz, "datetime")];
            for (let k = 0; k < n; k++) {
              const v = u.data[1 + k * 3][i];
              if (v !== null && v !== undefined) parts.push(`${units[k]}: ${formatNumber(v, lang)}`);
            }
            r.textContent = parts.join(" · ");
          },
        ],
        draw: [(u) => cb.current.onDrawn(u.data[0].length)],
      },
    };
    const u = new uPlot(opts, dataRef.current, el);
    plot.current = u;
    return () => {
      u.destroy();
      plot.current = null;
    };
    // width/height are applied by the resize effect below.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [n, labels, scheme, lang, tz]);

  useEffect(() => {
    plot.current?.setData(dataRef.current, true);
  }, [x, series, from, to]);

  useEffect(() => {
    plot.current?.setSize({ width: Math.max(200, width), height });
  }, [width, height]);

  return (
    <>
      <div ref={host} className="uplot-host" />
      <p ref={readout} className="chart-readout" aria-hidden="true">
        {"\u00a0"}
      </p>
    </>
  );
}
