import { describe, expect, it } from "vitest";
import { DAY } from "./range";
import { decodeExplore, encodeExplore } from "./urlstate";

const NOW = 1_780_000_000_000;

describe("explore query state", () => {
  it("round-trips", () => {
    const s = { m: "hr", m2: "steps", from: NOW - 3_600_000, to: NOW };
    const q = encodeExplore(s);
    expect(q).toBe(`?m=hr&m2=steps&from=${NOW - 3_600_000}&to=${NOW}`);
    expect(decodeExplore(q, 0)).toEqual(s);
  });
  it("round-trips names that need escaping", () => {
    const s = { m: "urn:dev:a b/c&d", m2: null, from: 1, to: 2 };
    expect(decodeExplore(encodeExplore(s), 0)).toEqual(s);
  });
  it("defaults to the last 24 h without a range", () => {
    expect(decodeExplore("", NOW)).toEqual({ m: null, m2: null, from: NOW - DAY, to: NOW });
  });
  it("ignores bad values", () => {
    expect(decodeExplore("?m=hr&from=abc&to=1e5", NOW)).toEqual({ m: "hr", m2: null, from: NOW - DAY, to: NOW });
    expect(decodeExplore("?from=2000&to=1000", NOW)).toMatchObject({ from: 1000 - DAY, to: 1000 });
    expect(decodeExplore("?m=&m2=%01x", NOW)).toMatchObject({ m: null, m2: null });
    expect(decodeExplore("?m=hr&m2=hr", NOW)).toMatchObject({ m: "hr", m2: null });
    expect(decodeExplore("?from=99999999999999999999&to=5", NOW).to).toBe(5);
  });
});
