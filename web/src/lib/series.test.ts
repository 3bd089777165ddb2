import { describe, expect, it } from "vitest";
import { alignRows, decimateMinMax } from "./series";

const row = (name: string, time_ms: number, avg: number | null, min = avg, max = avg, count = 1) => ({
  name,
  unit: name === "hr" ? "beat/min" : null,
  time_ms,
  avg,
  min,
  max,
  count,
});

describe("alignRows", () => {
  it("aligns two measurements on the union of bucket times", () => {
    const a = alignRows([row("hr", 1000, 60, 55, 70), row("hr", 3000, 62), row("steps", 2000, 10), row("steps", 3000, 12)], ["hr", "steps"]);
    expect(a.x).toEqual([1000, 2000, 3000]);
    expect(a.series[0]).toMatchObject({ unit: "beat/min", mean: [60, null, 62], min: [55, null, 62], max: [70, null, 62], points: 2 });
    expect(a.series[1].mean).toEqual([null, 10, 12]);
  });
  it("ignores rows it did not ask for and empty answers", () => {
    expect(alignRows([row("other", 1, 1)], ["hr"]).x).toEqual([]);
    expect(alignRows([], ["hr"]).series[0].points).toBe(0);
  });
});

describe("decimateMinMax", () => {
  it("keeps short series as they are", () => {
    expect(decimateMinMax([1, 2, 3], [4, 5, 6], 10)).toEqual([[1, 2, 3], [4, 5, 6]]);
  });
  it("keeps the min and max of each slice in time order", () => {
    const t = Array.from({ length: 1000 }, (_, i) => i);
    const v = t.map((i) => (i === 123 ? 100 : i === 456 ? -100 : Math.sin(i)));
    const [dt, dv] = decimateMinMax(t, v, 50);
    expect(dt.length).toBeLessThanOrEqual(100);
    expect(dv).toContain(100);
    expect(dv).toContain(-100);
    expect([...dt].sort((a, b) => a - b)).toEqual(dt);
  });
});
