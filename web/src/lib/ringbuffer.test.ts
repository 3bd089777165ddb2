import { describe, expect, it } from "vitest";
import { RingBuffer } from "./ringbuffer";

describe("RingBuffer", () => {
  it("keeps at most capacity points, newest last", () => {
    const rb = new RingBuffer(3, 1e12);
    for (let i = 1; i <= 5; i++) rb.push(i, i * 10);
    expect(rb.length).toBe(3);
    expect(rb.toArrays()).toEqual([
      [3, 4, 5],
      [30, 40, 50],
    ]);
    expect(rb.last()).toEqual({ time: 5, value: 50 });
  });

  it("drops points older than the window before the newest", () => {
    const rb = new RingBuffer(6000, 120_000);
    rb.push(0, 1);
    rb.push(60_000, 2);
    rb.push(120_000, 3);
    expect(rb.length).toBe(3);
    rb.push(180_001, 4);
    expect(rb.toArrays()[0]).toEqual([120_000, 180_001]);
  });

  it("stays bounded under a 50 Hz stream for ten minutes", () => {
    const rb = new RingBuffer(6000, 120_000);
    for (let i = 0; i < 50 * 600; i++) rb.push(i * 20, i);
    expect(rb.length).toBe(6000);
    const [t] = rb.toArrays(1e-3);
    expect(t[t.length - 1]).toBeCloseTo((50 * 600 - 1) * 0.02);
  });

  it("is empty at first and rejects a zero capacity", () => {
    expect(new RingBuffer(2, 10).last()).toBeUndefined();
    expect(() => new RingBuffer(0, 10)).toThrow(RangeError);
  });
});
