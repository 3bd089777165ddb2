// A list the API answers newest first, page by page (`before` = the previous page's
// `next_before`): the first page on mount, more on demand, appended without repeats.
import { useCallback, useEffect, useRef, useState } from "react";
import { useApi } from "../../api/useApi";
import { appendPage } from "./rights";

export interface Page<T> {
  items: T[];
  next: number | null;
}

export interface Paged<T> {
  items: T[] | undefined;
  /** True while a next page exists. */
  more: boolean;
  error: unknown;
  loading: boolean;
  loadMore: () => Promise<void>;
  reload: () => void;
  /** Changes the items in place (a decision's answer replaces its consent). */
  update: (f: (items: T[]) => T[]) => void;
}

export function usePaged<T>(
  fetchPage: (before: number | undefined, signal?: AbortSignal) => Promise<Page<T>>,
  key: (t: T) => string | number,
): Paged<T> {
  const first = useApi((s) => fetchPage(undefined, s), []);
  const [items, setItems] = useState<T[]>();
  const [next, setNext] = useState<number | null>(null);
  const [moreError, setMoreError] = useState<unknown>(null);
  const [loadingMore, setLoadingMore] = useState(false);
  const keyRef = useRef(key);
  keyRef.current = key;

  useEffect(() => {
    if (!first.data) return;
    setItems(first.data.items);
    setNext(first.data.next);
    setMoreError(null);
  }, [first.data]);

  const loadMore = useCallback(async () => {
    if (next === null) return;
    setLoadingMore(true);
    setMoreError(null);
    try {
      const page = await fetchPage(next);
      setItems((have) => appendPage(have ?? [], page.items, keyRef.current));
      setNext(page.next);
    } catch (e) {
      setMoreError(e);
    } finally {
      setLoadingMore(false);
    }
    // fetchPage is a stable module function at every call site.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [next]);

  const update = useCallback((f: (items: T[]) => T[]) => setItems((have) => (have ? f(have) : have)), []);

  return {
    items,
    more: next !== null,
    error: first.error ?? moreError,
    loading: first.loading || loadingMore,
    loadMore,
    reload: first.reload,
    update,
  };
}
