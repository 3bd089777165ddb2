import { useCallback, useEffect, useRef, useState } from "react";
import { ApiError, isAbort } from "./client";

export interface ApiResult<T> {
  data: T | undefined;
  error: ApiError | undefined;
  loading: boolean;
  reload: () => void;
}

/**
 * Fetch on mount and whenever `deps` change; the previous request is aborted
 * (stale answers never land). `fn` null = nothing to fetch.
 */
export function useApi<T>(fn: ((signal: AbortSignal) => Promise<T>) | null, deps: readonly unknown[]): ApiResult<T> {
  const [data, setData] = useState<T>();
  const [error, setError] = useState<ApiError>();
  const [loading, setLoading] = useState(fn !== null);
  const [tick, setTick] = useState(0);
  const fnRef = useRef(fn);
  fnRef.current = fn;

  useEffect(() => {
    const f = fnRef.current;
    if (!f) {
      setLoading(false);
      return;
    }
    const ac = new AbortController();
    setLoading(true);
    f(ac.signal).then(
      (d) => {
        if (ac.signal.aborted) return;
        setData(d);
        setError(undefined);
        setLoading(false);
      },
      (e: unknown) => {
        if (ac.signal.aborted || isAbort(e)) return;
        setError(e instanceof ApiError ? e : new ApiError(0, "Error", String(e)));
        setLoading(false);
      },
    );
    return () => ac.abort();
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [...deps, tick]);

  const reload = useCallback(() => setTick((x) => x + 1), []);
  return { data, error, loading, reload };
}

/** The current time, refreshed every `everyMs` (for "2 min ago"). */
export function useNow(everyMs = 30_000): number {
  const [now, setNow] = useState(() => Date.now());
  useEffect(() => {
    const t = setInterval(() => setNow(Date.now()), everyMs);
    return () => clearInterval(t);
  }, [everyMs]);
  return now;
}
