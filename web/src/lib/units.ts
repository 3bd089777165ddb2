// Unit conversion for display. Values are stored in SenML units (RFC 8428 /
// RFC 8798 names: Cel, m, kg, m/s …); imperial converts a few, unknown units
// are shown as sent.

export type UnitSystem = "metric" | "imperial";

const MILE_M = 1609.344;
const FOOT_M = 0.3048;
const POUND_KG = 0.45359237;

export interface Converter {
  /** Unit label to show. */
  unit: string;
  convert: (v: number) => number;
}

const identity = (v: number) => v;

/** Display labels for SenML names in metric. */
const METRIC_LABEL: Record<string, string> = { Cel: "°C" };

/**
 * The converter for a unit. `magnitude` is a typical absolute value (in the
 * stored unit) so metres become miles for long distances and feet otherwise;
 * a whole series should use one converter.
 */
export function converterFor(unit: string | null | undefined, system: UnitSystem, magnitude = 0): Converter {
  const u = unit ?? "";
  if (system === "imperial") {
    switch (u) {
      case "Cel":
        return { unit: "°F", convert: (v) => (v * 9) / 5 + 32 };
      case "m":
        return Math.abs(magnitude) >= MILE_M
          ? { unit: "mi", convert: (v) => v / MILE_M }
          : { unit: "ft", convert: (v) => v / FOOT_M };
      case "kg":
        return { unit: "lb", convert: (v) => v / POUND_KG };
      case "m/s":
        return { unit: "mph", convert: (v) => (v * 3600) / MILE_M };
    }
  }
  return { unit: METRIC_LABEL[u] ?? u, convert: identity };
}

export function convert(v: number, unit: string | null | undefined, system: UnitSystem): { value: number; unit: string } {
  const c = converterFor(unit, system, v);
  return { value: c.convert(v), unit: c.unit };
}
