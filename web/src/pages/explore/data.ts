import { api } from "../../api/client";
import { alignRows, type Aligned } from "../../lib/series";

/** Bucketed series for one or two measurements, aligned on one x array. */
export async function fetchExplore(names: string[], from: number, to: number, bucket: number, signal: AbortSignal): Promise<Aligned> {
  const rows = await api.measurements({ from, to, names, bucket, limit: 10000 }, signal);
  return alignRows(rows, names);
}
