import { describe, expect, it } from "vitest";
import { DAY, HOUR, PRESETS, chooseBucket, matchingPreset, pan, presetRange, zoom, zoomTo } from "./range";

describe("chooseBucket", () => {
  it("is the next round step above one bucket per two pixels", () => {
    // 24 h over 500 buckets: 172.8 s → 5 min.
    expect(chooseBucket(0, DAY, 1000)).toBe(5 * 60_000);
    // 24 h over 60 buckets: exactly 24 min → 30 min.
    expect(chooseBucket(0, DAY, 120)).toBe(30 * 60_000);
    // 30 days over 583 buckets (a 1166 px chart): 74 min → 2 h.
    expect(chooseBucket(0, 30 * DAY, 1166)).toBe(2 * HOUR);
    // A year over 400 buckets: 21.9 h → 1 day; over 100 buckets: 3.65 days → 4 days.
    expect(chooseBucket(0, 365 * DAY, 800)).toBe(DAY);
    expect(chooseBucket(0, 365 * DAY, 200)).toBe(4 * DAY);
  });
  it("is a whole number of minutes from a minute up (the store's rollup)", () => {
    for (const w of [360, 777, 1280]) {
      for (const span of [HOUR, 6 * HOUR, DAY, 7 * DAY, 30 * DAY, 365 * DAY]) {
        const b = chooseBucket(0, span, w);
        if (b >= 60_000) expect(b % 60_000).toBe(0);
      }
    }
  });
  it("never goes below one second", () => {
    expect(chooseBucket(0, 60_000, 1200)).toBe(1000);
    expect(chooseBucket(5, 5, 300)).toBe(1000);
  });
  it("keeps the number of buckets at most half the width", () => {
    for (const w of [360, 777, 1280]) {
      for (const p of PRESETS) {
        const b = chooseBucket(0, p.ms, w);
        expect(Math.ceil(p.ms / b)).toBeLessThanOrEqual(Math.ceil(w / 2));
      }
    }
  });
});

describe("presets, pan and zoom", () => {
  const now = 1_780_000_000_000;
  it("presets end now", () => {
    expect(presetRange("6h", now)).toEqual({ from: now - 6 * HOUR, to: now });
    expect(presetRange("1y", now).from).toBe(now - 365 * DAY);
    expect(matchingPreset(presetRange("7d", now))).toBe("7d");
    expect(matchingPreset({ from: 0, to: 12345 })).toBeUndefined();
  });
  it("pans by half the range", () => {
    expect(pan({ from: 0, to: HOUR }, -1)).toEqual({ from: -HOUR / 2, to: HOUR / 2 });
    expect(pan({ from: 0, to: HOUR }, 1)).toEqual({ from: HOUR / 2, to: 1.5 * HOUR });
  });
  it("zooms out around the centre", () => {
    expect(zoom({ from: HOUR, to: 2 * HOUR }, 2)).toEqual({ from: HOUR / 2, to: 2.5 * HOUR });
    expect(zoom({ from: 0, to: 20_000 }, 0.1)).toEqual({ from: 5000, to: 15_000 });
  });
  it("zooms to a selection in either order with a minimum span", () => {
    expect(zoomTo(5000, 1000)).toEqual({ from: -2000, to: 8000 });
    expect(zoomTo(HOUR, 0)).toEqual({ from: 0, to: HOUR });
  });
});
