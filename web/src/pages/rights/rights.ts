// The rights page's pure shaping: what a consent's state allows, readable purposes, pages
// appended without repeats, the pack settings form and the erasure form checked before they
// are sent, and an erasure's counts as a sentence. No React, no fetch: tested in rights.test.ts.
import type { EraseRequest, Erased, PackSettingsBody } from "../../api/types";
import { table, type Key } from "../../i18n/strings";
import { wallTimeToMs } from "../../lib/time";

export type ConsentAction = "grant" | "refuse" | "revoke";

/** What the owner may still decide on a consent (the server's state machine, docs/consent.md). */
export function consentActions(status: string): ConsentAction[] {
  switch (status) {
    case "pending":
      return ["grant", "refuse"];
    case "granted":
      return ["revoke"];
    default:
      // Refused and revoked are final; an unknown state offers nothing rather than guessing.
      return [];
  }
}

const STATUS_KEYS: Record<string, Key> = {
  pending: "consentPending",
  granted: "consentGranted",
  refused: "consentRefused",
  revoked: "consentRevoked",
};

/** The translation key of a consent's or receipt's state; null for a state this page does not know. */
export function consentStatusKey(status: string): Key | null {
  // Own keys only: "toString" is no state.
  return Object.prototype.hasOwnProperty.call(STATUS_KEYS, status) ? STATUS_KEYS[status] : null;
}

/** The translation key of a DPV purpose the server accepts; null for a term this page does not know. */
export function purposeKey(term: string): Key | null {
  const m = /^dpv:(\w+)$/.exec(term);
  const key = m ? `purpose_${m[1]}` : "";
  return Object.prototype.hasOwnProperty.call(table.en, key) ? (key as Key) : null;
}

/**
 * A DPV term this page has no words for, as words: "dpv:ResearchAndDevelopment" → "Research and development".
 * The term itself stays visible beside it (it is what the receipt says).
 */
export function purposeLabel(term: string): string {
  const name = term.replace(/^[a-z]+:/, "");
  const words = name
    .replace(/([a-z0-9])([A-Z])/g, "$1 $2")
    .replace(/([A-Z]+)([A-Z][a-z])/g, "$1 $2")
    .split(" ")
    .filter(Boolean);
  if (words.length === 0) return term;
  return words
    .map((w, i) => {
      // Acronyms (all capitals, more than one letter) keep their case.
      if (w.length > 1 && w === w.toUpperCase()) return w;
      return i === 0 ? w[0].toUpperCase() + w.slice(1) : w.toLowerCase();
    })
    .join(" ");
}

/** `have` then the items of `page` not already in it (a page fetched twice adds nothing). */
export function appendPage<T>(have: readonly T[], page: readonly T[], key: (t: T) => string | number): T[] {
  const seen = new Set(have.map(key));
  return [...have, ...page.filter((t) => !seen.has(key(t)))];
}

/** `list` with the item of the same id replaced by `item` (a decision's answer). */
export function replaceById<T extends { id: string | number }>(list: readonly T[], item: T): T[] {
  return list.map((x) => (x.id === item.id ? item : x));
}

export interface PackSettingsForm {
  ceiling: string;
  ageBand: string;
  region: string;
}

/** The PUT body for the pack settings form, or the field that is wrong. */
export function packSettingsBody(form: PackSettingsForm): { body: PackSettingsBody } | { error: "ceiling" } {
  const raw = form.ceiling.trim().replace(",", ".");
  const ceiling = raw === "" ? NaN : Number(raw);
  if (!Number.isFinite(ceiling) || ceiling < 0 || ceiling > 1000) return { error: "ceiling" };
  // The server refuses an empty string; an empty field means "not shared".
  const opt = (s: string) => (s.trim() === "" ? null : s.trim());
  return { body: { budget_ceiling: ceiling, age_band: opt(form.ageBand), region: opt(form.region) } };
}

export interface EraseForm {
  /** A device id, or "" for all devices. */
  device: string;
  /** datetime-local values, "" when not given. */
  from: string;
  to: string;
}

export type EraseFormError = "eraseNeedsSomething" | "eraseBadTime" | "eraseInverted";

/** The POST /api/v1/erasures body for the form, times read in `tz`, or what is wrong with it. */
export function eraseRequest(form: EraseForm, tz: string): { request: EraseRequest } | { error: EraseFormError } {
  const request: EraseRequest = {};
  if (form.device) request.device = form.device;
  for (const [field, value] of [
    ["from_ms", form.from],
    ["to_ms", form.to],
  ] as const) {
    if (!value) continue;
    const ms = wallTimeToMs(value, tz);
    if (ms === null) return { error: "eraseBadTime" };
    request[field] = ms;
  }
  if (request.device === undefined && request.from_ms === undefined && request.to_ms === undefined) {
    return { error: "eraseNeedsSomething" };
  }
  if (request.from_ms !== undefined && request.to_ms !== undefined && request.from_ms >= request.to_ms) {
    return { error: "eraseInverted" };
  }
  return { request };
}

/** An erasure's counts as (label key, number) pairs, in the order the page says them. */
export function erasedParts(e: Erased, account: boolean): [Key, number][] {
  const parts: [Key, number][] = [
    ["erasedMeasurements", e.measurements],
    ["erasedActivity", e.activity_segments],
    ["erasedRetained", e.retained],
    ["erasedDeadLetters", e.dead_letters],
  ];
  if (e.archive) {
    parts.push(["erasedArchiveDeleted", e.archive.files_deleted], ["erasedArchiveRewritten", e.archive.files_rewritten]);
  }
  if (account) parts.push(["erasedSessions", e.sessions]);
  return parts;
}

/** "€2.50" / "2,50 €"; a code Intl does not know is written after the number. */
export function formatMoney(cents: number, currency: string, locale: string): string {
  try {
    return new Intl.NumberFormat(locale, { style: "currency", currency }).format(cents / 100);
  } catch {
    return `${new Intl.NumberFormat(locale, { minimumFractionDigits: 2, maximumFractionDigits: 2 }).format(cents / 100)} ${currency}`;
  }
}
