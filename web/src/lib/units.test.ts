import { describe, expect, it } from "vitest";
import { convert, converterFor } from "./units";

describe("unit conversion", () => {
  it("converts Celsius to Fahrenheit in imperial", () => {
    expect(convert(100, "Cel", "imperial")).toEqual({ value: 212, unit: "°F" });
    expect(convert(-40, "Cel", "imperial").value).toBeCloseTo(-40);
    expect(convert(21, "Cel", "metric")).toEqual({ value: 21, unit: "°C" });
  });
  it("chooses feet or miles for metres", () => {
    expect(convert(3.048, "m", "imperial").unit).toBe("ft");
    expect(convert(3.048, "m", "imperial").value).toBeCloseTo(10);
    const c = converterFor("m", "imperial", 5000);
    expect(c.unit).toBe("mi");
    expect(c.convert(1609.344)).toBeCloseTo(1);
  });
  it("converts kg and m/s", () => {
    expect(convert(1, "kg", "imperial").value).toBeCloseTo(2.20462, 4);
    expect(convert(1, "m/s", "imperial")).toMatchObject({ unit: "mph" });
    expect(convert(1, "m/s", "imperial").value).toBeCloseTo(2.23694, 4);
  });
  it("shows unknown units as sent", () => {
    expect(convert(61, "beat/min", "imperial")).toEqual({ value: 61, unit: "beat/min" });
    expect(convert(3, undefined, "imperial")).toEqual({ value: 3, unit: "" });
  });
});
