import { describe, expect, it } from "vitest";
import { TRIGGER_KINDS, availableKinds, triggerBody } from "./triggers";

const kind = (k: string) => TRIGGER_KINDS.find((s) => s.kind === k)!;

describe("triggerBody", () => {
  it("builds a kv trigger with its collection, ops and retry", () => {
    expect(
      triggerBody(kind("kv"), "scr_1", { collection: " carts ", ops: ["set"] }, { max_attempts: 3, base_delay_ms: null, max_delay_ms: "" }),
    ).toEqual({ script_id: "scr_1", collection: "carts", ops: ["set"], retry: { max_attempts: 3, base_delay_ms: 1000, max_delay_ms: 60000 } });
  });

  it("sends no retry for dead-letter handlers and none when not asked", () => {
    expect(triggerBody(kind("dead_letter"), "scr_1", {}, { max_attempts: 3, base_delay_ms: 1, max_delay_ms: 2 })).toEqual({ script_id: "scr_1" });
    expect(triggerBody(kind("docs"), "scr_1", { collection: "orders" }, { max_attempts: "", base_delay_ms: "", max_delay_ms: "" })).toEqual({
      script_id: "scr_1",
      collection: "orders",
      ops: [],
    });
  });
});

describe("availableKinds", () => {
  const doc = (kinds: string[]) => ({ components: { schemas: { TriggerKind: { type: "string", enum: kinds } } } });

  it("offers only the kinds the server lists", () => {
    expect(availableKinds(doc(["kv", "docs", "dead_letter"])).map((k) => k.kind)).toEqual(["kv", "docs", "dead_letter"]);
    expect(availableKinds(doc(["kv", "cron"])).map((k) => k.kind)).toEqual(["kv", "cron"]);
  });

  it("falls back to the base kinds without a readable document", () => {
    expect(availableKinds(null).map((k) => k.kind)).toEqual(["kv", "docs", "dead_letter"]);
    expect(availableKinds({}).map((k) => k.kind)).toEqual(["kv", "docs", "dead_letter"]);
  });

  it("builds a cron trigger", () => {
    expect(triggerBody(kind("cron"), "scr_1", { schedule: "0 0 * * * *", timezone: "Europe/Paris" }, null)).toEqual({
      script_id: "scr_1",
      schedule: "0 0 * * * *",
      timezone: "Europe/Paris",
    });
  });

  it("builds a files trigger with its collection and ops", () => {
    expect(triggerBody(kind("files"), "scr_1", { collection: "avatars", ops: ["create", "delete"] }, null)).toEqual({
      script_id: "scr_1",
      collection: "avatars",
      ops: ["create", "delete"],
    });
    expect(kind("files").fields.find((f) => f.name === "ops")?.options).toEqual(["create", "update", "delete"]);
  });

  it("builds a pubsub trigger with its topic and retry", () => {
    expect(
      triggerBody(kind("pubsub"), "scr_1", { topic: " orders.* " }, { max_attempts: "2", base_delay_ms: "10", max_delay_ms: "" }),
    ).toEqual({ script_id: "scr_1", topic: "orders.*", retry: { max_attempts: 2, base_delay_ms: 10, max_delay_ms: 60000 } });
  });

  it("offers files and pubsub when the server lists them", () => {
    expect(availableKinds(doc(["kv", "docs", "files", "pubsub", "cron", "dead_letter"])).map((k) => k.kind)).toEqual([
      "kv",
      "docs",
      "files",
      "pubsub",
      "dead_letter",
      "cron",
    ]);
  });
});

describe("describe", () => {
  it("says what files and pubsub triggers watch", () => {
    expect(kind("files").describe({ collection: "avatars", ops: ["create"] })).toBe("avatars on create");
    expect(kind("files").describe({ collection: "avatars", ops: [] })).toBe("avatars on every change");
    expect(kind("pubsub").describe({ topic: "orders.*" })).toBe("topic orders.*");
  });
});
