import { describe, expect, it } from "vitest";
import type { Erased } from "../../api/types";
import { translate } from "../../i18n/strings";
import { wallTimeToMs } from "../../lib/time";
import {
  appendPage,
  consentActions,
  consentStatusKey,
  erasedParts,
  eraseRequest,
  formatMoney,
  packSettingsBody,
  purposeKey,
  purposeLabel,
  replaceById,
} from "./rights";

describe("consentActions", () => {
  it("offers grant and refuse on a pending request, revoke on a granted one, nothing after", () => {
    expect(consentActions("pending")).toEqual(["grant", "refuse"]);
    expect(consentActions("granted")).toEqual(["revoke"]);
    expect(consentActions("refused")).toEqual([]);
    expect(consentActions("revoked")).toEqual([]);
    expect(consentActions("expired")).toEqual([]);
  });
});

describe("consentStatusKey", () => {
  it("names every state in both languages and none it does not know", () => {
    for (const s of ["pending", "granted", "refused", "revoked"]) {
      const key = consentStatusKey(s);
      expect(key).not.toBeNull();
      expect(translate("en", key!)).not.toBe(translate("fr", key!));
    }
    expect(translate("fr", consentStatusKey("granted")!)).toBe("Accordé");
    expect(consentStatusKey("maybe")).toBeNull();
    expect(consentStatusKey("toString")).toBeNull();
  });
});

describe("purposeKey", () => {
  it("names the purposes the server accepts in both languages", () => {
    expect(purposeKey("dpv:AcademicResearch")).toBe("purpose_AcademicResearch");
    expect(translate("fr", purposeKey("dpv:AcademicResearch")!)).toBe("Recherche universitaire");
    expect(translate("en", purposeKey("dpv:EnforceSecurity")!)).toBe("Security");
  });
  it("has none for another term or a key that is no purpose", () => {
    expect(purposeKey("dpv:Fun")).toBeNull();
    expect(purposeKey("AcademicResearch")).toBeNull();
    expect(purposeKey("dpv:")).toBeNull();
    expect(purposeKey("dpv:Research and development")).toBeNull();
  });
});

describe("purposeLabel", () => {
  it("turns a DPV term into words", () => {
    expect(purposeLabel("dpv:ResearchAndDevelopment")).toBe("Research and development");
    expect(purposeLabel("dpv:AcademicResearch")).toBe("Academic research");
    expect(purposeLabel("dpv:ServiceProvision")).toBe("Service provision");
  });
  it("keeps acronyms and leaves a term without words as it is", () => {
    expect(purposeLabel("dpv:IdentityVerificationForKYC")).toBe("Identity verification for KYC");
    expect(purposeLabel("dpv:")).toBe("dpv:");
  });
});

describe("appendPage and replaceById", () => {
  it("adds only what is new, in order", () => {
    const have = [{ id: 3 }, { id: 2 }];
    expect(appendPage(have, [{ id: 2 }, { id: 1 }], (e) => e.id)).toEqual([{ id: 3 }, { id: 2 }, { id: 1 }]);
    expect(appendPage([], [{ id: 1 }], (e) => e.id)).toEqual([{ id: 1 }]);
  });
  it("replaces the decided consent and keeps the others", () => {
    const list = [
      { id: "a", status: "pending" },
      { id: "b", status: "pending" },
    ];
    expect(replaceById(list, { id: "b", status: "granted" })).toEqual([
      { id: "a", status: "pending" },
      { id: "b", status: "granted" },
    ]);
  });
});

describe("packSettingsBody", () => {
  it("sends empty profile fields as not shared, trimmed text otherwise", () => {
    expect(packSettingsBody({ ceiling: "2.5", ageBand: " 30-39 ", region: "" })).toEqual({
      body: { budget_ceiling: 2.5, age_band: "30-39", region: null },
    });
  });
  it("reads a decimal comma and refuses a ceiling outside 0–1000 or missing", () => {
    expect(packSettingsBody({ ceiling: "0,5", ageBand: "", region: "EU" })).toEqual({
      body: { budget_ceiling: 0.5, age_band: null, region: "EU" },
    });
    for (const ceiling of ["", "-1", "1000.5", "abc", "Infinity"]) {
      expect(packSettingsBody({ ceiling, ageBand: "", region: "" }), ceiling).toEqual({ error: "ceiling" });
    }
    expect(packSettingsBody({ ceiling: "0", ageBand: "", region: "" })).toHaveProperty("body.budget_ceiling", 0);
  });
});

describe("wallTimeToMs", () => {
  it("reads a datetime-local value in the chosen time zone", () => {
    expect(wallTimeToMs("2026-01-15T10:00", "UTC")).toBe(Date.UTC(2026, 0, 15, 10, 0));
    expect(wallTimeToMs("2026-01-15T10:00", "Europe/Paris")).toBe(Date.UTC(2026, 0, 15, 9, 0));
    expect(wallTimeToMs("2026-07-01T10:00:30", "Europe/Paris")).toBe(Date.UTC(2026, 6, 1, 8, 0, 30));
    expect(wallTimeToMs("2026-07-01T10:00", "America/New_York")).toBe(Date.UTC(2026, 6, 1, 14, 0));
  });
  it("refuses what is no time", () => {
    for (const bad of ["", "2026-02-30T10:00", "2026-01-15", "2026-01-15T24:00", "2026-13-01T00:00", "yesterday"]) {
      expect(wallTimeToMs(bad, "UTC"), bad).toBeNull();
    }
  });
});

describe("eraseRequest", () => {
  it("names the device, the range or both", () => {
    expect(eraseRequest({ device: "dq3vmx7k2rpa4", from: "", to: "" }, "UTC")).toEqual({
      request: { device: "dq3vmx7k2rpa4" },
    });
    expect(eraseRequest({ device: "", from: "2026-01-01T00:00", to: "2026-01-02T00:00" }, "Europe/Paris")).toEqual({
      request: { from_ms: Date.UTC(2025, 11, 31, 23), to_ms: Date.UTC(2026, 0, 1, 23) },
    });
    expect(eraseRequest({ device: "d1", from: "", to: "2026-01-02T00:00" }, "UTC")).toEqual({
      request: { device: "d1", to_ms: Date.UTC(2026, 0, 2) },
    });
  });
  it("refuses an empty form, an inverted range and a bad time before asking the server", () => {
    expect(eraseRequest({ device: "", from: "", to: "" }, "UTC")).toEqual({ error: "eraseNeedsSomething" });
    expect(eraseRequest({ device: "", from: "2026-01-02T00:00", to: "2026-01-02T00:00" }, "UTC")).toEqual({
      error: "eraseInverted",
    });
    expect(eraseRequest({ device: "d1", from: "2026-02-30T00:00", to: "" }, "UTC")).toEqual({ error: "eraseBadTime" });
  });
});

describe("erasedParts", () => {
  const erased: Erased = {
    measurements: 1440,
    dead_letters: 0,
    activity_segments: 3,
    retained: 1,
    sessions: 2,
    archive: { files_deleted: 0, files_rewritten: 1, rows: 1440 },
    elapsed_ms: 41,
  };
  it("lists the counts the API answered, the archive's when there is one", () => {
    expect(erasedParts(erased, false)).toEqual([
      ["erasedMeasurements", 1440],
      ["erasedActivity", 3],
      ["erasedRetained", 1],
      ["erasedDeadLetters", 0],
      ["erasedArchiveDeleted", 0],
      ["erasedArchiveRewritten", 1],
    ]);
    expect(erasedParts({ ...erased, archive: null }, true).map(([k]) => k)).toEqual([
      "erasedMeasurements",
      "erasedActivity",
      "erasedRetained",
      "erasedDeadLetters",
      "erasedSessions",
    ]);
  });
});

describe("formatMoney", () => {
  it("formats cents in the currency and language", () => {
    expect(formatMoney(250, "EUR", "en-GB")).toBe("€2.50");
    expect(formatMoney(250, "EUR", "fr-FR")).toBe("2,50\u00a0€");
    expect(formatMoney(1234567, "USD", "en-GB")).toBe("US$12,345.67");
  });
  it("writes a code Intl refuses after the number", () => {
    expect(formatMoney(250, "euros", "en-GB")).toBe("2.50 euros");
  });
});
