import { describe, expect, it } from "vitest";
import { layoutTimeline, minutesByActivity } from "./timeline";
import { endOfDay, startOfDay, tzOffsetMs } from "./time";

const H = 3_600_000;
const DAY0 = Date.UTC(2026, 11, 5);

describe("activity timeline layout", () => {
  it("clips segments to the day and drops those outside", () => {
    const segs = [
      { activity: "laying", start_ms: DAY0 - 2 * H, end_ms: DAY0 + 6 * H },
      { activity: "walking", start_ms: DAY0 + 12 * H, end_ms: DAY0 + 18 * H },
      { activity: "sitting", start_ms: DAY0 + 22 * H, end_ms: DAY0 + 26 * H },
      { activity: "standing", start_ms: DAY0 + 30 * H, end_ms: DAY0 + 31 * H },
      { activity: "walking", start_ms: DAY0 - 5 * H, end_ms: DAY0 - 4 * H },
    ];
    const out = layoutTimeline(segs, DAY0, DAY0 + 24 * H);
    expect(out.map((s) => [s.activity, s.leftPct, s.widthPct])).toEqual([
      ["laying", 0, 25],
      ["walking", 50, 25],
      ["sitting", (22 / 24) * 100, (2 / 24) * 100],
    ]);
    expect(out[2].end).toBe(DAY0 + 24 * H);
  });
  it("sorts by start and ignores reversed or empty segments", () => {
    const out = layoutTimeline(
      [
        { activity: "b", start_ms: DAY0 + 2 * H, end_ms: DAY0 + H },
        { activity: "a", start_ms: DAY0 + 0.5 * H, end_ms: DAY0 + 0.5 * H },
        { activity: "c", start_ms: NaN, end_ms: DAY0 },
      ],
      DAY0,
      DAY0 + 24 * H,
    );
    expect(out.map((s) => s.activity)).toEqual(["b"]);
  });
  it("sums minutes per activity in a stable order", () => {
    const out = layoutTimeline(
      [
        { activity: "sitting", start_ms: DAY0, end_ms: DAY0 + H },
        { activity: "walking", start_ms: DAY0 + H, end_ms: DAY0 + 1.5 * H },
        { activity: "sitting", start_ms: DAY0 + 2 * H, end_ms: DAY0 + 2.25 * H },
      ],
      DAY0,
      DAY0 + 24 * H,
    );
    expect(minutesByActivity(out)).toEqual([
      ["walking", 30],
      ["sitting", 75],
    ]);
  });
});

describe("time zones", () => {
  it("finds local midnight", () => {
    expect(startOfDay(DAY0 + 13 * H, "UTC")).toBe(DAY0);
    expect(startOfDay(DAY0 + 13 * H, "Europe/Paris")).toBe(DAY0 - H);
    expect(startOfDay(DAY0 + 2 * H, "America/New_York")).toBe(DAY0 - 19 * H);
    expect(tzOffsetMs(DAY0, "Asia/Kolkata")).toBe(5.5 * H);
  });
  it("has 23-hour days at the spring change", () => {
    const mar29 = Date.UTC(2026, 2, 29, 12);
    expect(endOfDay(mar29, "Europe/Paris") - startOfDay(mar29, "Europe/Paris")).toBe(23 * H);
  });
});
