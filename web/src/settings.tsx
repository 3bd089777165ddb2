// Display preferences (time zone, units, language) in localStorage. These are
// preferences, not secrets: no token is ever stored here.
import { createContext, useCallback, useContext, useEffect, useMemo, useState, type ReactNode } from "react";
import { isLang, type Lang } from "./i18n/strings";
import { isValidTimeZone } from "./lib/time";
import type { UnitSystem } from "./lib/units";

export interface Settings {
  lang: Lang;
  tz: string;
  units: UnitSystem;
}

const KEY = "tributary.settings";

export function browserTimeZone(): string {
  try {
    return Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
  } catch {
    return "UTC";
  }
}

function defaults(): Settings {
  const nav = typeof navigator !== "undefined" ? navigator.language || "en" : "en";
  return { lang: nav.toLowerCase().startsWith("fr") ? "fr" : "en", tz: browserTimeZone(), units: "metric" };
}

function load(): Settings {
  const d = defaults();
  try {
    const raw = localStorage.getItem(KEY);
    if (!raw) return d;
    const p = JSON.parse(raw) as Partial<Record<keyof Settings, unknown>>;
    return {
      lang: isLang(p.lang) ? p.lang : d.lang,
      tz: typeof p.tz === "string" && isValidTimeZone(p.tz) ? p.tz : d.tz,
      units: p.units === "imperial" || p.units === "metric" ? p.units : d.units,
    };
  } catch {
    return d;
  }
}

interface Ctx {
  settings: Settings;
  update: (patch: Partial<Settings>) => void;
}

const SettingsContext = createContext<Ctx | null>(null);

export function SettingsProvider({ children }: { children: ReactNode }) {
  const [settings, setSettings] = useState<Settings>(load);
  const update = useCallback((patch: Partial<Settings>) => {
    setSettings((s) => {
      const next = { ...s, ...patch };
      try {
        localStorage.setItem(KEY, JSON.stringify(next));
      } catch {
        /* private mode: keep in memory */
      }
      return next;
    });
  }, []);
  useEffect(() => {
    document.documentElement.lang = settings.lang;
  }, [settings.lang]);
  const value = useMemo(() => ({ settings, update }), [settings, update]);
  return <SettingsContext.Provider value={value}>{children}</SettingsContext.Provider>;
}

export function useSettings(): Ctx {
  const c = useContext(SettingsContext);
  if (!c) throw new Error("useSettings outside SettingsProvider");
  return c;
}
