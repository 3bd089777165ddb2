// The typed client against the server's OpenAPI document: every call the
// client makes must be a documented route and method, so the page and the
// API cannot drift apart unnoticed (the Rust side checks that the document
// lists every route the router has).
import { describe, expect, it } from "vitest";
import clientSource from "./client.ts?raw";
import openapiText from "../../../crates/api/src/openapi.json?raw";

interface OpenApi {
  paths: Record<string, Record<string, unknown>>;
}
const openapi = JSON.parse(openapiText) as OpenApi;

/** (method, path) of each call in client.ts; `${…}` path parts become `{}`. */
function calls(source: string): [string, string][] {
  const found: [string, string][] = [];
  const call = /\b(request|get)<[^>]*>\(\s*(?:"([A-Z]+)",\s*)?(["`])(\/api\/[^"`?]*)/g;
  for (const m of source.matchAll(call)) {
    const method = m[1] === "get" ? "GET" : m[2];
    found.push([method, m[4].replace(/\$\{[^}]*\}/g, "{}")]);
  }
  // Addresses the page links to (downloads, the live feed): every `somethingUrl:` property.
  const urls = /\b(\w+Url):[^"`]*["`](\/api\/[^"`?]*)/g;
  for (const m of source.matchAll(urls)) found.push(["GET", m[2].replace(/\$\{[^}]*\}/g, "{}")]);
  return found;
}

/** The documented path that matches `path`, with `{}` standing for any parameter. */
function documented(path: string): string | undefined {
  const shape = (p: string) => p.replace(/\{[^}]*\}/g, "{}");
  return Object.keys(openapi.paths).find((p) => shape(p) === path);
}

describe("the client and the OpenAPI document", () => {
  const used = calls(clientSource);

  it("finds the client's calls", () => {
    expect(used.length).toBeGreaterThanOrEqual(15);
    expect(used).toContainEqual(["DELETE", "/api/v1/devices/{}"]);
    expect(used).toContainEqual(["GET", "/api/v1/live"]);
    expect(used).toContainEqual(["GET", "/api/v1/takeout"]);
    expect(used).toContainEqual(["GET", "/api/v1/consents/{}/receipts/{}"]);
    expect(used).toContainEqual(["POST", "/api/v1/consents/{}/revoke"]);
    expect(used).toContainEqual(["DELETE", "/api/v1/account"]);
  });

  it.each(used)("%s %s is documented", (method, path) => {
    const p = documented(path);
    expect(p, `${path} is not in openapi.json`).toBeDefined();
    expect(Object.keys(openapi.paths[p as string]), `${method} ${path}`).toContain(method.toLowerCase());
  });
});
