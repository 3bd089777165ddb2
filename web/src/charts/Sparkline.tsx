// A 24 h sparkline as SVG (about 120 px wide): the mean as a line over a
// min–max band. Data arrive bucketed from the server.

interface Props {
  times: number[];
  mean: (number | null)[];
  min: (number | null)[];
  max: (number | null)[];
  from: number;
  to: number;
  label: string;
  width?: number;
  height?: number;
}

export function Sparkline({ times, mean, min, max, from, to, label, width = 120, height = 32 }: Props) {
  let lo = Infinity;
  let hi = -Infinity;
  for (let i = 0; i < times.length; i++) {
    const a = min[i] ?? mean[i];
    const b = max[i] ?? mean[i];
    if (a !== null && a < lo) lo = a;
    if (b !== null && b > hi) hi = b;
  }
  if (!Number.isFinite(lo)) {
    return (
      <svg className="sparkline" width={width} height={height} role="img" aria-label={label}>
        <line x1="0" x2={width} y1={height / 2} y2={height / 2} className="spark-empty" />
      </svg>
    );
  }
  if (hi === lo) {
    hi += 1;
    lo -= 1;
  }
  const pad = 2;
  const x = (t: number) => ((t - from) / (to - from)) * width;
  const y = (v: number) => pad + (1 - (v - lo) / (hi - lo)) * (height - 2 * pad);
  let line = "";
  let top = "";
  let bottom = "";
  for (let i = 0; i < times.length; i++) {
    const v = mean[i];
    if (v === null) continue;
    const px = x(times[i]).toFixed(1);
    line += `${line ? "L" : "M"}${px},${y(v).toFixed(1)}`;
    top += `${top ? "L" : "M"}${px},${y(max[i] ?? v).toFixed(1)}`;
    bottom = `L${px},${y(min[i] ?? v).toFixed(1)}` + bottom;
  }
  return (
    <svg className="sparkline" width={width} height={height} viewBox={`0 0 ${width} ${height}`} role="img" aria-label={label}>
      <path d={top + bottom + "Z"} className="spark-band" />
      <path d={line} className="spark-line" />
    </svg>
  );
}
