// One polite aria-live region for status messages ("Copied.", "Device added.").
import { useSyncExternalStore } from "react";

let message = "";
let seq = 0;
const ls = new Set<() => void>();

export function announce(msg: string): void {
  // A counter-based key makes the same message announce again.
  message = msg;
  seq++;
  ls.forEach((l) => l());
}

const sub = (l: () => void) => {
  ls.add(l);
  return () => void ls.delete(l);
};

export function Announcer() {
  const s = useSyncExternalStore(sub, () => seq);
  return (
    <div className="visually-hidden" role="status" aria-live="polite" aria-atomic="true">
      <span key={s}>{message}</span>
    </div>
  );
}
