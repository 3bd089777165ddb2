// Bounded time series: at most `capacity` points and only those newer than
// `windowMs` before the newest one. Fixed memory (typed arrays), O(1) push.

export class RingBuffer {
  readonly capacity: number;
  readonly windowMs: number;
  private times: Float64Array;
  private values: Float64Array;
  private start = 0;
  private len = 0;

  constructor(capacity: number, windowMs: number) {
    if (!(capacity > 0)) throw new RangeError("capacity must be positive");
    this.capacity = Math.floor(capacity);
    this.windowMs = windowMs;
    this.times = new Float64Array(this.capacity);
    this.values = new Float64Array(this.capacity);
  }

  get length(): number {
    return this.len;
  }

  push(timeMs: number, value: number): void {
    if (this.len === this.capacity) {
      this.start = (this.start + 1) % this.capacity;
      this.len--;
    }
    const i = (this.start + this.len) % this.capacity;
    this.times[i] = timeMs;
    this.values[i] = value;
    this.len++;
    this.prune(timeMs - this.windowMs);
  }

  /** Drop points older than `minTimeMs` (from the oldest end). */
  prune(minTimeMs: number): void {
    while (this.len > 0 && this.times[this.start] < minTimeMs) {
      this.start = (this.start + 1) % this.capacity;
      this.len--;
    }
  }

  last(): { time: number; value: number } | undefined {
    if (this.len === 0) return undefined;
    const i = (this.start + this.len - 1) % this.capacity;
    return { time: this.times[i], value: this.values[i] };
  }

  /** Copy out in time order, as uPlot wants: [times (s or ms), values]. */
  toArrays(timeScale = 1): [number[], number[]] {
    const t = new Array<number>(this.len);
    const v = new Array<number>(this.len);
    for (let k = 0; k < this.len; k++) {
      const i = (this.start + k) % this.capacity;
      t[k] = this.times[i] * timeScale;
      v[k] = this.values[i];
    }
    return [t, v];
  }
}
