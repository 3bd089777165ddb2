// Live data: SSE events → SenML points → bounded ring buffers per
// (device, name). Plain objects, no React; the page reads them once per frame.
import type { LiveEvent } from "../../api/types";
import { RingBuffer } from "../../lib/ringbuffer";
import { numericValue, resolveSenml } from "../../lib/senml";
import { decimateMinMax } from "../../lib/series";

export const WINDOW_MS = 120_000;
export const MAX_POINTS = 6000;
/** Series kept at all (text values); the first MAX_CHARTS get a chart. */
export const MAX_SERIES = 100;
export const MAX_CHARTS = 12;

export interface LiveSeries {
  key: string;
  device: string;
  name: string;
  unit: string | undefined;
  buf: RingBuffer;
  /** Bumped on every new point; charts redraw when it changes. */
  version: number;
  data: () => [number[], number[]];
}

export class LiveStore {
  readonly series = new Map<string, LiveSeries>();
  lastReceivedMs: number | null = null;
  lastEventId: string | null = null;

  /** Returns true when the event carried at least one numeric point. */
  ingest(raw: string, eventId?: string): boolean {
    let ev: LiveEvent;
    try {
      ev = JSON.parse(raw) as LiveEvent;
    } catch {
      return false;
    }
    if (!ev || typeof ev !== "object" || typeof ev.device !== "string") return false;
    if (eventId) this.lastEventId = eventId;
    if (typeof ev.received_ms === "number") this.lastReceivedMs = ev.received_ms;
    // CBOR packs arrive base64-encoded; the dashboard ignores them.
    if (ev.encoding && ev.encoding !== "json") return false;
    const now = typeof ev.received_ms === "number" ? ev.received_ms : Date.now();
    let any = false;
    for (const p of resolveSenml(ev.payload, now)) {
      const v = numericValue(p);
      if (v === undefined) continue;
      const key = `${ev.device}\u0000${p.name}`;
      let s = this.series.get(key);
      if (!s) {
        if (this.series.size >= MAX_SERIES) continue;
        const buf = new RingBuffer(MAX_POINTS, WINDOW_MS);
        s = { key, device: ev.device, name: p.name, unit: p.unit, buf, version: 0, data: () => decimateMinMax(...buf.toArrays(), 600) };
        this.series.set(key, s);
      }
      if (p.unit !== undefined) s.unit = p.unit;
      s.buf.push(p.time_ms, v);
      s.version++;
      any = true;
    }
    return any;
  }
}
