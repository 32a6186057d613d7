// The trigger kinds the create form offers, one entry each: adding a kind is adding a
// row here. The form shows a row only when the server's OpenAPI document lists the
// kind (`TriggerKind`), so a row may be ready before the server has the kind.

export interface TriggerField {
  name: string;
  label: string;
  type: "text" | "ops";
  placeholder?: string;
  /** For `ops`: the operations a trigger of this kind can watch. */
  options?: string[];
  required?: boolean;
  /** A short note shown under the input. */
  hint?: string;
}

export interface TriggerKindSpec {
  kind: string;
  label: string;
  fields: TriggerField[];
  /** Whether the kind takes a retry policy (dead-letter handlers are never retried). */
  retry: boolean;
  /** What the list shows about one trigger of this kind. */
  describe: (t: Record<string, unknown>) => string;
}

const collectionOps = (t: Record<string, unknown>) =>
  `${t.collection ?? "?"} on ${Array.isArray(t.ops) && t.ops.length ? t.ops.join(", ") : "every change"}`;

export const TRIGGER_KINDS: TriggerKindSpec[] = [
  {
    kind: "kv",
    label: "KV changes",
    fields: [
      { name: "collection", label: "Collection", type: "text", placeholder: "carts", required: true },
      { name: "ops", label: "Operations", type: "ops", options: ["set", "delete"] },
    ],
    retry: true,
    describe: collectionOps,
  },
  {
    kind: "docs",
    label: "Document changes",
    fields: [
      { name: "collection", label: "Collection", type: "text", placeholder: "orders", required: true },
      { name: "ops", label: "Operations", type: "ops", options: ["create", "update", "delete"] },
    ],
    retry: true,
    describe: collectionOps,
  },
  {
    kind: "files",
    label: "File changes",
    fields: [
      { name: "collection", label: "Collection", type: "text", placeholder: "avatars", required: true },
      { name: "ops", label: "Operations", type: "ops", options: ["create", "update", "delete"] },
    ],
    retry: true,
    describe: collectionOps,
  },
  {
    kind: "pubsub",
    label: "Published messages",
    fields: [
      {
        name: "topic",
        label: "Topic pattern",
        type: "text",
        placeholder: "orders.*",
        required: true,
        hint: "exact, prefix.* or *",
      },
    ],
    retry: true,
    describe: (t) => `topic ${t.topic ?? "?"}`,
  },
  {
    kind: "dead_letter",
    label: "Dead letters",
    fields: [],
    retry: false,
    describe: () => "every new dead letter of the app",
  },
  {
    kind: "cron",
    label: "Schedule",
    fields: [
      { name: "schedule", label: "Schedule (6 fields, with seconds)", type: "text", placeholder: "0 */5 * * * *", required: true },
      { name: "timezone", label: "Time zone (IANA, default UTC)", type: "text", placeholder: "Europe/Berlin" },
    ],
    retry: true,
    describe: (t) => `${t.schedule ?? "?"} (${t.timezone ?? "UTC"})${t.next_fire_at ? `, next ${String(t.next_fire_at).slice(0, 16).replace("T", " ")} UTC` : ""}`,
  },
];

/** The kinds every server of this API version has (used when its document cannot be read). */
const BASE_KINDS = ["kv", "docs", "dead_letter"];

/** The rows the server supports, by the `TriggerKind` enum of its OpenAPI document. */
export function availableKinds(openapi: unknown): TriggerKindSpec[] {
  const schemas = (openapi as { components?: { schemas?: Record<string, { enum?: unknown }> } } | null)?.components?.schemas;
  const listed = schemas?.TriggerKind?.enum;
  const kinds = Array.isArray(listed) ? listed.filter((k): k is string => typeof k === "string") : BASE_KINDS;
  return TRIGGER_KINDS.filter((spec) => kinds.includes(spec.kind));
}

/** The request body for a create form's values. */
export function triggerBody(
  spec: TriggerKindSpec,
  scriptId: string,
  values: Record<string, string | string[]>,
  retry: { max_attempts: unknown; base_delay_ms: unknown; max_delay_ms: unknown } | null,
): Record<string, unknown> {
  const body: Record<string, unknown> = { script_id: scriptId };
  for (const f of spec.fields) {
    const v = values[f.name];
    if (f.type === "ops") body[f.name] = Array.isArray(v) ? v : [];
    else if (typeof v === "string" && v.trim() !== "") body[f.name] = v.trim();
  }
  const given = (v: unknown) => v !== "" && v !== null && v !== undefined;
  if (spec.retry && retry && given(retry.max_attempts)) {
    body.retry = {
      max_attempts: Number(retry.max_attempts),
      base_delay_ms: given(retry.base_delay_ms) ? Number(retry.base_delay_ms) : 1000,
      max_delay_ms: given(retry.max_delay_ms) ? Number(retry.max_delay_ms) : 60000,
    };
  }
  return body;
}
