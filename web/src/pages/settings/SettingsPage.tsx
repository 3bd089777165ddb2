import { useMemo } from "react";
import { announce } from "../../components/Announcer";
import { useT } from "../../i18n";
import { translate, type Lang } from "../../i18n/strings";
import type { UnitSystem } from "../../lib/units";
import { browserTimeZone, useSettings } from "../../settings";
import { usePageTitle } from "../../usePageTitle";

const FALLBACK_ZONES = [
  "UTC",
  "Europe/London",
  "Europe/Paris",
  "Europe/Berlin",
  "America/New_York",
  "America/Chicago",
  "America/Denver",
  "America/Los_Angeles",
  "America/Montreal",
  "America/Sao_Paulo",
  "Africa/Abidjan",
  "Africa/Casablanca",
  "Asia/Kolkata",
  "Asia/Shanghai",
  "Asia/Tokyo",
  "Australia/Sydney",
  "Pacific/Auckland",
];

function timeZones(current: string): string[] {
  let zones: string[];
  try {
    const intl = Intl as unknown as { supportedValuesOf?: (k: string) => string[] };
    zones = intl.supportedValuesOf ? intl.supportedValuesOf("timeZone") : FALLBACK_ZONES;
  } catch {
    zones = FALLBACK_ZONES;
  }
  const set = new Set(zones);
  set.add(current);
  set.add(browserTimeZone());
  set.add("UTC");
  return [...set].sort();
}

export function SettingsPage() {
  const t = useT();
  usePageTitle(t("settingsTitle"));
  const { settings, update } = useSettings();
  const zones = useMemo(() => timeZones(settings.tz), [settings.tz]);
  const save = (patch: Parameters<typeof update>[0]) => {
    update(patch);
    // Announce in the language just chosen.
    announce(patch.lang ? translate(patch.lang, "settingsSaved") : t("settingsSaved"));
  };

  return (
    <>
      <h1>{t("settingsTitle")}</h1>
      <p className="muted">{t("settingsNote")}</p>
      <form className="settings-form" onSubmit={(e) => e.preventDefault()}>
        <div className="field">
          <label htmlFor="tz">{t("timezone")}</label>
          <select id="tz" value={settings.tz} onChange={(e) => save({ tz: e.target.value })}>
            {zones.map((z) => (
              <option key={z} value={z}>
                {z.replace(/_/g, " ")}
              </option>
            ))}
          </select>
        </div>
        <fieldset>
          <legend>{t("units")}</legend>
          {(["metric", "imperial"] as UnitSystem[]).map((u) => (
            <label key={u} className="radio">
              <input type="radio" name="units" value={u} checked={settings.units === u} onChange={() => save({ units: u })} />
              {t(u)}
            </label>
          ))}
        </fieldset>
        <div className="field">
          <label htmlFor="lang">{t("language")}</label>
          <select id="lang" value={settings.lang} onChange={(e) => save({ lang: e.target.value as Lang })}>
            <option value="en" lang="en">
              English
            </option>
            <option value="fr" lang="fr">
              Français
            </option>
          </select>
        </div>
      </form>
    </>
  );
}
