// Who is signed in. The CSRF token lives in memory only (client.ts).
import { useSyncExternalStore } from "react";
import { ApiError, api, setCsrf, setUnauthorizedHandler } from "./client";

export type SessionState =
  | { status: "loading" }
  /** `notice`: what the sign-in form says first (e.g. the counts of an erased account). */
  | { status: "anon"; notice?: string }
  | { status: "signed"; owner: string }
  /** Signed in before, the server now says 401: sign-in shown over the page. */
  | { status: "expired"; owner: string };

let state: SessionState = { status: "loading" };
const listeners = new Set<() => void>();
let waiters: (() => void)[] = [];

function set(s: SessionState) {
  state = s;
  listeners.forEach((l) => l());
}

export const sessionStore = {
  get: () => state,
  subscribe(l: () => void) {
    listeners.add(l);
    return () => void listeners.delete(l);
  },
};

export function useSession(): SessionState {
  return useSyncExternalStore(sessionStore.subscribe, sessionStore.get, sessionStore.get);
}

setUnauthorizedHandler(() => {
  setCsrf(null);
  if (state.status === "signed") set({ status: "expired", owner: state.owner });
  return new Promise<void>((resolve) => waiters.push(resolve));
});

/** Ask the server whether the cookie is live (at start). */
export async function checkSession(): Promise<void> {
  try {
    const s = await api.session();
    setCsrf(s.csrf);
    set({ status: "signed", owner: s.owner });
  } catch {
    // 401, or no answer at all: either way the sign-in form is what can be
    // shown (its submit reports a server that cannot be reached).
    set({ status: "anon" });
  }
}

/** Check the session again (used after an EventSource error): a 401 triggers re-auth. */
export async function probeSession(signal?: AbortSignal): Promise<void> {
  try {
    const s = await api.session(signal);
    setCsrf(s.csrf);
  } catch (e) {
    if (e instanceof ApiError && e.status === 401 && state.status === "signed") {
      set({ status: "expired", owner: state.owner });
      await new Promise<void>((resolve) => waiters.push(resolve));
    }
  }
}

export async function signIn(name: string, password: string): Promise<void> {
  const r = await api.login(name, password);
  setCsrf(r.csrf);
  set({ status: "signed", owner: r.owner });
  const w = waiters;
  waiters = [];
  w.forEach((f) => f());
}

export async function signOut(): Promise<void> {
  try {
    await api.logout();
  } catch {
    /* the cookie may already be gone; sign out locally anyway */
  }
  setCsrf(null);
  waiters = [];
  set({ status: "anon" });
}

/**
 * The server has ended the session itself (the account was erased): forget it here without
 * asking the server, and let the sign-in form say `notice`.
 */
export function endSession(notice: string): void {
  setCsrf(null);
  waiters = [];
  set({ status: "anon", notice });
}
