import { describe, expect, it } from "vitest";
import { formatDate, formatNumber, formatValue, relativeTime, stats } from "./format";

const NOW = Date.UTC(2026, 11, 5, 12, 0, 0);
const norm = (s: string) => s.replace(/[\u00a0\u202f]/g, " ");

describe("formatting", () => {
  it("formats numbers per language", () => {
    expect(formatNumber(61.5, "en")).toBe("61.5");
    expect(formatNumber(61.5, "fr")).toBe("61,5");
    expect(norm(formatNumber(12345.6, "fr"))).toBe("12 346");
    expect(formatNumber(12345.6, "en")).toBe("12,346");
    expect(formatNumber(0.123, "en")).toBe("0.12");
    expect(formatNumber(NaN, "en")).toBe("–");
  });
  it("formats values with converted units", () => {
    expect(norm(formatValue(61.5, "beat/min", "metric", "fr"))).toBe("61,5 beat/min");
    expect(norm(formatValue(20, "Cel", "imperial", "en"))).toBe("68 °F");
    expect(norm(formatValue(20, "Cel", "metric", "fr"))).toBe("20 °C");
  });
  it("formats dates in the chosen time zone", () => {
    expect(formatDate(NOW, "en", "UTC", "time")).toBe("12:00");
    expect(formatDate(NOW, "fr", "Europe/Paris", "time")).toBe("13:00");
    expect(formatDate(NOW, "en", "America/New_York", "time")).toBe("07:00");
    expect(norm(formatDate(NOW, "fr", "UTC", "date"))).toBe("5 déc. 2026");
  });
  it("says how long ago", () => {
    expect(relativeTime(NOW - 2 * 60_000, NOW, "en")).toBe("2 min ago");
    expect(relativeTime(NOW - 2 * 60_000, NOW, "fr")).toBe("il y a 2 min");
    expect(relativeTime(NOW - 3000, NOW, "en")).toBe("just now");
    expect(relativeTime(NOW - 45_000, NOW, "en")).toBe("45 s ago");
    expect(relativeTime(NOW - 5 * 3_600_000, NOW, "fr")).toBe("il y a 5 h");
    expect(relativeTime(NOW - 3 * 86_400_000, NOW, "en")).toBe("3 d ago");
    expect(relativeTime(NOW + 60_000, NOW, "en")).toBe("in the future");
  });
  it("computes weighted stats and skips gaps", () => {
    expect(stats([1, null, 3, undefined, NaN])).toEqual({ min: 1, mean: 2, max: 3, n: 2 });
    expect(stats([10, 20], [3, 1])?.mean).toBe(12.5);
    expect(stats([])).toBeNull();
  });
});
