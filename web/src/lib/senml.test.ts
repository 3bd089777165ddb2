import { describe, expect, it } from "vitest";
import { numericValue, resolveSenml } from "./senml";

const NOW = 1_780_000_000_000;

describe("resolveSenml", () => {
  it("applies bn, bt, bu to every following record", () => {
    const pack = [
      { bn: "urn:dev:watch:", bt: 1_780_000_000, bu: "Cel", n: "temp", v: 21.5 },
      { n: "temp", t: 10, v: 22 },
      { n: "hr", u: "beat/min", t: 20, v: 61 },
    ];
    expect(resolveSenml(pack, NOW)).toEqual([
      { name: "urn:dev:watch:temp", unit: "Cel", time_ms: 1_780_000_000_000, value: 21.5 },
      { name: "urn:dev:watch:temp", unit: "Cel", time_ms: 1_780_000_010_000, value: 22 },
      { name: "urn:dev:watch:hr", unit: "beat/min", time_ms: 1_780_000_020_000, value: 61 },
    ]);
  });

  it("treats times at or below 2^28 s as relative to now", () => {
    const [a, b, c] = resolveSenml([{ n: "x", v: 1 }, { n: "x", t: -5, v: 2 }, { n: "x", t: 0.25, v: 3 }], NOW);
    expect(a.time_ms).toBe(NOW);
    expect(b.time_ms).toBe(NOW - 5000);
    expect(c.time_ms).toBe(NOW + 250);
  });

  it("treats large times as absolute seconds and adds bt", () => {
    const [p] = resolveSenml([{ bt: 1_700_000_000, n: "x", t: 1.5, v: 1 }], NOW);
    expect(p.time_ms).toBe(1_700_000_001_500);
  });

  it("adds bv and bs, keeps vs, vb and vd", () => {
    const out = resolveSenml(
      [
        { bv: 100, bs: 10, n: "a", v: 5 },
        { n: "b", s: 2 },
        { n: "c", vs: "hello" },
        { n: "d", vb: false },
        { n: "e", vd: "AQI=" },
      ],
      NOW,
    );
    expect(out.map((p) => [p.name, p.value, p.sum, p.text, p.bool, p.data])).toEqual([
      ["a", 105, undefined, undefined, undefined, undefined],
      ["b", undefined, 12, undefined, undefined, undefined],
      ["c", undefined, undefined, "hello", undefined, undefined],
      ["d", undefined, undefined, undefined, false, undefined],
      ["e", undefined, undefined, undefined, undefined, "AQI="],
    ]);
    expect(out.map(numericValue)).toEqual([105, 12, undefined, 0, undefined]);
  });

  it("parses JSON text", () => {
    expect(resolveSenml('[{"n":"hr","u":"beat/min","v":61}]', NOW)).toEqual([
      { name: "hr", unit: "beat/min", time_ms: NOW, value: 61 },
    ]);
  });

  it("ignores bad input without throwing", () => {
    expect(resolveSenml("not json", NOW)).toEqual([]);
    expect(resolveSenml('{"n":"x","v":1}', NOW)).toEqual([]);
    expect(resolveSenml(null, NOW)).toEqual([]);
    expect(resolveSenml(42, NOW)).toEqual([]);
    const out = resolveSenml(
      [null, 3, "x", [], { v: 1 }, { n: "novalue" }, { n: "bad", v: "12" }, { n: "inf", v: Infinity }, { n: "ok", v: 1, t: "soon" }],
      NOW,
    );
    expect(out).toEqual([{ name: "ok", time_ms: NOW, value: 1 }]);
  });
});
