import { useEffect, useState, type RefObject } from "react";

/** The element's content width, tracked with ResizeObserver. */
export function useWidth(ref: RefObject<HTMLElement | null>, initial = 600): number {
  const [w, setW] = useState(initial);
  useEffect(() => {
    const el = ref.current;
    if (!el) return;
    setW(Math.floor(el.clientWidth) || initial);
    const ro = new ResizeObserver((entries) => {
      const cw = Math.floor(entries[0].contentRect.width);
      if (cw > 0) setW(cw);
    });
    ro.observe(el);
    return () => ro.disconnect();
  }, [ref, initial]);
  return w;
}
