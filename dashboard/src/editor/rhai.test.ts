import { describe, expect, it } from "vitest";
import { ctxCompletions, namespaceCompletions, wordCompletions } from "./rhai";
import type { Sdk } from "../api/client";

const SDK: Sdk = {
  version: "1.0",
  namespaces: [
    {
      name: "kv",
      functions: [
        { name: "get", params: ["collection: string", "key: string"], returns: "any", doc: "Reads a value." },
        { name: "set", params: ["collection: string", "key: string", "value: any"], returns: "()", doc: "" },
      ],
    },
    {
      name: "log",
      functions: [
        { name: "info", params: ["msg: string"], returns: "()", doc: "" },
        { name: "info", params: ["msg: any"], returns: "()", doc: "" },
      ],
    },
    { name: "a::b", functions: [{ name: "f", params: [], returns: "()", doc: "" }] },
  ],
};

describe("completions", () => {
  it("offers ctx fields level by level", () => {
    expect(ctxCompletions("ctx").map((c) => c.label)).toEqual(["app", "script", "principal", "request", "event", "execution"]);
    expect(ctxCompletions("ctx.request").map((c) => c.label)).toContain("body");
    expect(ctxCompletions("ctx.event.kv").map((c) => c.label)).toEqual(["collection", "key", "value", "prev"]);
    expect(ctxCompletions("ctx.nope")).toEqual([]);
  });

  it("offers every function of a namespace with its signature and doc", () => {
    const kv = namespaceCompletions(SDK, "kv");
    expect(kv.map((c) => c.label)).toEqual(["get", "set"]);
    expect(kv[0].detail).toBe("(collection, key)");
    expect(String(kv[0].info)).toContain("Reads a value.");
    expect(kv[0].apply).toBe("get(");
    // Overloads are one entry listing both signatures.
    const log = namespaceCompletions(SDK, "log");
    expect(log).toHaveLength(1);
    expect(String(log[0].info).split("\n")).toHaveLength(2);
    expect(namespaceCompletions(SDK, "a::b").map((c) => c.label)).toEqual(["f"]);
    expect(namespaceCompletions(SDK, "nope")).toEqual([]);
  });

  it("offers ctx, the top-level namespaces and keywords for a bare word", () => {
    const labels = wordCompletions(SDK).map((c) => c.label);
    expect(labels).toContain("ctx");
    expect(labels).toContain("kv::");
    expect(labels).toContain("log::");
    expect(labels).not.toContain("a::b::");
    expect(labels).toContain("let");
    expect(wordCompletions(null).map((c) => c.label)).toContain("ctx");
  });
});
