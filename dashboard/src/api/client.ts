// The one module that talks to the server. Every call names a path of the public API
// as it appears in `schema.d.ts` (generated from the committed `openapi.json`, which a
// Rust test keeps equal to what the server publishes), so a renamed path or field is
// a type error at build time instead of a broken page.
import type { components, paths } from "./schema";

export type Schemas = components["schemas"];
export type App = Schemas["AppDto"];
export type Script = Schemas["ScriptDto"];
export type Route = Schemas["RouteDto"];
export type Execution = Schemas["ExecutionDto"];
export type Trigger = Schemas["TriggerDto"];
export type DeadLetter = Schemas["DeadLetterDto"];
export type KvEntry = Schemas["KvEntryDto"];
export type FileMeta = Schemas["FileDto"];
export type User = Schemas["UserDto"];
export type ApiKey = Schemas["ApiKeyDto"];
export type Member = Schemas["MemberDto"];
export type Secret = Schemas["SecretDto"];
export type Me = Schemas["MeResponse"];
export type Session = Schemas["SessionResponse"];
export type Scope = Schemas["Scope"];
export type Role = Schemas["Role"];
export interface List<T> {
  items: T[];
  next_cursor?: string | null;
}

export interface SdkFunction {
  name: string;
  params: string[];
  returns: string;
  doc: string;
}
export interface Sdk {
  version: string;
  namespaces: { name: string; functions: SdkFunction[] }[];
}

/** An error answer of the API, or a failure to reach it (`code: "network"`). */
export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  readonly field?: string;
  readonly line?: number;
  readonly column?: number;
  readonly executionId?: string;

  constructor(
    status: number,
    code: string,
    message: string,
    extra: { field?: string | null; line?: number | null; column?: number | null; execution_id?: string | null } = {},
  ) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.field = extra.field ?? undefined;
    this.line = extra.line ?? undefined;
    this.column = extra.column ?? undefined;
    this.executionId = extra.execution_id ?? undefined;
  }
}

/** Turns a non-2xx answer into an [`ApiError`], whatever its body looks like. */
export function errorFromResponse(status: number, statusText: string, bodyText: string): ApiError {
  let parsed: unknown;
  try {
    parsed = bodyText ? JSON.parse(bodyText) : undefined;
  } catch {
    parsed = undefined;
  }
  const err = (parsed as { error?: Schemas["ErrorBody"] } | undefined)?.error;
  if (err && typeof err === "object" && typeof err.message === "string") {
    return new ApiError(status, typeof err.code === "string" ? err.code : "error", err.message, err);
  }
  // A proxy's HTML page or an empty body: say what we know, never dump markup.
  const text = bodyText && !bodyText.trimStart().startsWith("<") ? bodyText.slice(0, 200) : "";
  const message = text || statusText || `request failed with status ${status}`;
  return new ApiError(status, status === 0 ? "network" : "http_" + status, message);
}

type Method = "get" | "post" | "put" | "patch" | "delete";
type Json<C> = C extends { content: { "application/json": infer T } } ? T : void;
type Success<O> = O extends { responses: infer R }
  ? 200 extends keyof R
    ? Json<R[200]>
    : 201 extends keyof R
      ? Json<R[201]>
      : 202 extends keyof R
        ? Json<R[202]>
        : void
  : never;
type Body<O> = O extends { requestBody?: { content: { "application/json": infer B } } } ? B : never;
type Op<P extends keyof paths, M extends Method> = paths[P][M];

let csrfToken: string | null = null;
let onUnauthorized: (() => void) | null = null;

export function setCsrfToken(token: string | null | undefined) {
  csrfToken = token ?? null;
}
/** Called when a request answers 401: the session ended; show the login page. */
export function setUnauthorizedHandler(handler: (() => void) | null) {
  onUnauthorized = handler;
}

function fill(path: string, params: Record<string, string>): string {
  return path.replace(/\{(\w+)\}/g, (_, name: string) => {
    const value = params[name];
    if (value === undefined) throw new Error(`missing path parameter ${name}`);
    return encodeURIComponent(value);
  });
}

function withQuery(url: string, query?: Record<string, string | number | undefined | null>): string {
  if (!query) return url;
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) {
    if (v !== undefined && v !== null && v !== "") q.set(k, String(v));
  }
  const s = q.toString();
  return s ? `${url}?${s}` : url;
}

export interface CallOptions {
  params?: Record<string, string>;
  query?: Record<string, string | number | undefined | null>;
  /** Don't treat a 401 as "signed out" (the login form itself). */
  quiet401?: boolean;
}

/** One typed call: `path` must be a path of the API and `method` one of its methods. */
export async function call<P extends keyof paths, M extends Method & keyof paths[P]>(
  method: M,
  path: P,
  opts: CallOptions & { body?: Body<Op<P, M>> } = {},
  fetchImpl: typeof fetch = fetch,
): Promise<Success<Op<P, M>>> {
  const url = withQuery(fill(path as string, opts.params ?? {}), opts.query);
  const headers: Record<string, string> = { accept: "application/json" };
  if (opts.body !== undefined) headers["content-type"] = "application/json";
  if (method !== "get" && csrfToken) headers["x-csrf-token"] = csrfToken;
  let response: Response;
  try {
    response = await fetchImpl(url, {
      method: method.toUpperCase(),
      headers,
      body: opts.body !== undefined ? JSON.stringify(opts.body) : undefined,
      credentials: "same-origin",
    });
  } catch (e) {
    throw new ApiError(0, "network", `cannot reach the server (${e instanceof Error ? e.message : String(e)})`);
  }
  const text = await response.text();
  if (!response.ok) {
    const err = errorFromResponse(response.status, response.statusText, text);
    if (response.status === 401 && !opts.quiet401 && onUnauthorized) onUnauthorized();
    throw err;
  }
  if (!text) return undefined as Success<Op<P, M>>;
  try {
    return JSON.parse(text) as Success<Op<P, M>>;
  } catch {
    throw new ApiError(response.status, "bad_response", "the server answered with something that is not JSON");
  }
}

/** Progress of an upload: bytes sent so far of `total`. */
export type UploadProgress = (loaded: number, total: number) => void;

/** The minimal XMLHttpRequest surface `send` uses (a fake in unit tests). */
export interface XhrLike {
  open(method: string, url: string): void;
  setRequestHeader(name: string, value: string): void;
  send(body: Blob): void;
  abort(): void;
  readonly status: number;
  readonly statusText: string;
  readonly responseText: string;
  withCredentials: boolean;
  upload: { onprogress: ((e: ProgressEvent) => void) | null };
  onload: (() => void) | null;
  onerror: (() => void) | null;
  onabort: (() => void) | null;
}

/**
 * Sends `body` (a File or Blob, streamed by the browser — never read into memory here)
 * as the raw request body, with the same session cookie and CSRF header as [`call`],
 * reporting upload progress. Answers the parsed JSON of a 2xx, or throws an [`ApiError`].
 */
export function sendBytes<T>(
  method: "POST" | "PUT",
  url: string,
  body: Blob,
  opts: { contentType?: string; onProgress?: UploadProgress; signal?: AbortSignal } = {},
  makeXhr: () => XhrLike = () => new XMLHttpRequest() as unknown as XhrLike,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const xhr = makeXhr();
    xhr.open(method, url);
    xhr.withCredentials = true;
    xhr.setRequestHeader("accept", "application/json");
    xhr.setRequestHeader("content-type", opts.contentType || body.type || "application/octet-stream");
    if (csrfToken) xhr.setRequestHeader("x-csrf-token", csrfToken);
    xhr.upload.onprogress = (e) => {
      if (e.lengthComputable) opts.onProgress?.(e.loaded, e.total);
    };
    xhr.onload = () => {
      const text = xhr.responseText;
      if (xhr.status < 200 || xhr.status >= 300) {
        if (xhr.status === 401 && onUnauthorized) onUnauthorized();
        reject(errorFromResponse(xhr.status, xhr.statusText, text));
        return;
      }
      opts.onProgress?.(body.size, body.size);
      try {
        resolve((text ? JSON.parse(text) : undefined) as T);
      } catch {
        reject(new ApiError(xhr.status, "bad_response", "the server answered with something that is not JSON"));
      }
    };
    xhr.onerror = () => reject(new ApiError(0, "network", "cannot reach the server (the upload failed)"));
    xhr.onabort = () => reject(new ApiError(0, "aborted", "the upload was cancelled"));
    opts.signal?.addEventListener("abort", () => xhr.abort(), { once: true });
    xhr.send(body);
  });
}

/** A path of the API with its parameters filled in (for links and raw-body requests). */
export function apiUrl<P extends keyof paths>(
  path: P,
  params: Record<string, string>,
  query?: Record<string, string | number | undefined | null>,
): string {
  return withQuery(fill(path as string, params), query);
}

/** Every item of a list, following `next_cursor` (bounded: the dashboard shows pages, not archives). */
export async function all<T>(page: (cursor?: string) => Promise<List<T>>, max = 2000): Promise<T[]> {
  const out: T[] = [];
  let cursor: string | undefined;
  do {
    const list = await page(cursor);
    out.push(...list.items);
    cursor = list.next_cursor ?? undefined;
  } while (cursor && out.length < max);
  return out;
}

// The endpoints the dashboard uses, by area. Types come from the schema.
export const api = {
  me: () => call("get", "/api/v1/auth/me", { quiet401: true }),
  login: (email: string, password: string) =>
    call("post", "/api/v1/auth/login", { body: { email, password, cookie: true }, quiet401: true }),
  setup: (token: string, email: string, password: string) =>
    call("post", "/api/v1/auth/setup", { body: { token, email, password } }),
  logout: () => call("post", "/api/v1/auth/logout", { quiet401: true }),
  changePassword: (body: Schemas["ChangePassword"]) => call("post", "/api/v1/auth/password", { body }),
  sdk: () => call("get", "/api/v1/sdk") as unknown as Promise<Sdk>,
  /** The server's OpenAPI document (served beside the API, so not a path of itself). */
  openapi: async (): Promise<unknown> => {
    const r = await fetch("/api/v1/openapi.json", { headers: { accept: "application/json" } });
    if (!r.ok) throw errorFromResponse(r.status, r.statusText, await r.text());
    return r.json();
  },

  apps: (cursor?: string) => call("get", "/api/v1/admin/apps", { query: { cursor, limit: 500 } }),
  createApp: (slug: string, name?: string) =>
    call("post", "/api/v1/admin/apps", { body: { slug, name: name || null } }),
  app: (app: string) => call("get", "/api/v1/admin/apps/{app}", { params: { app } }),
  updateApp: (app: string, name: string) =>
    call("patch", "/api/v1/admin/apps/{app}", { params: { app }, body: { name } }),
  deleteApp: (app: string) => call("delete", "/api/v1/admin/apps/{app}", { params: { app } }),

  scripts: (app: string) =>
    call("get", "/api/v1/admin/apps/{app}/scripts", { params: { app }, query: { limit: 500 } }),
  createScript: (app: string, body: Schemas["CreateScript"]) =>
    call("post", "/api/v1/admin/apps/{app}/scripts", { params: { app }, body }),
  script: (app: string, id: string) =>
    call("get", "/api/v1/admin/apps/{app}/scripts/{id}", { params: { app, id } }),
  updateScript: (app: string, id: string, body: Schemas["UpdateScript"]) =>
    call("put", "/api/v1/admin/apps/{app}/scripts/{id}", { params: { app, id }, body }),
  deleteScript: (app: string, id: string) =>
    call("delete", "/api/v1/admin/apps/{app}/scripts/{id}", { params: { app, id } }),

  routes: (app: string) =>
    call("get", "/api/v1/admin/apps/{app}/routes", { params: { app }, query: { limit: 500 } }),
  createRoute: (scriptId: string, body: Schemas["CreateRoute"]) =>
    call("post", "/api/v1/admin/scripts/{id}/routes", { params: { id: scriptId }, body }),
  deleteRoute: (id: string) => call("delete", "/api/v1/admin/routes/{id}", { params: { id } }),

  executions: (app: string, query: { script_id?: string; status?: string; source?: string; limit?: number; cursor?: string }) =>
    call("get", "/api/v1/admin/apps/{app}/executions", { params: { app }, query }),
  execution: (app: string, id: string) =>
    call("get", "/api/v1/admin/apps/{app}/executions/{id}", { params: { app, id } }),

  kv: (app: string, collection: string, query: { prefix?: string; cursor?: string; limit?: number }) =>
    call("get", "/api/v1/admin/apps/{app}/kv/{collection}", { params: { app, collection }, query }),

  files: (app: string, query: { collection?: string; cursor?: string; limit?: number }) =>
    call("get", "/api/v1/admin/apps/{app}/files", { params: { app }, query }),
  /** Uploads `file` into `collection` under `name` (the file's own name by default). */
  uploadFile: (app: string, collection: string, file: Blob, name: string, onProgress?: UploadProgress, signal?: AbortSignal) =>
    sendBytes<FileMeta>(
      "POST",
      apiUrl("/api/v1/admin/apps/{app}/files/{collection}", { app, collection }, { name }),
      file,
      { onProgress, signal },
    ),
  deleteFile: (app: string, collection: string, fileId: string) =>
    call("delete", "/api/v1/admin/apps/{app}/files/{collection}/{file_id}", { params: { app, collection, file_id: fileId } }),
  /** The URL of a file's bytes (the session cookie authenticates a same-origin GET). */
  fileContentUrl: (app: string, collection: string, fileId: string) =>
    apiUrl("/api/v1/admin/apps/{app}/files/{collection}/{file_id}/content", { app, collection, file_id: fileId }),

  triggers: (app: string) =>
    call("get", "/api/v1/admin/apps/{app}/triggers", { params: { app }, query: { limit: 500 } }),
  createTrigger: (app: string, kind: string, body: Record<string, unknown>) =>
    call("post", "/api/v1/admin/apps/{app}/triggers/{trigger}", {
      params: { app, trigger: kind },
      // Each kind has its own fields (table-driven form); the server validates them.
      body: body as Schemas["CreateTrigger"],
    }),
  setTriggerEnabled: (app: string, id: string, enabled: boolean) =>
    call("patch", "/api/v1/admin/apps/{app}/triggers/{trigger}", { params: { app, trigger: id }, body: { enabled } }),
  deleteTrigger: (app: string, id: string) =>
    call("delete", "/api/v1/admin/apps/{app}/triggers/{trigger}", { params: { app, trigger: id } }),

  deadLetters: (app: string, status: "unresolved" | "resolved" | "all", limit = 200) =>
    call("get", "/api/v1/admin/apps/{app}/dead-letters", { params: { app }, query: { status, limit } }),
  replayDeadLetter: (app: string, id: string) =>
    call("post", "/api/v1/admin/apps/{app}/dead-letters/{id}/replay", { params: { app, id } }),
  resolveDeadLetter: (app: string, id: string) =>
    call("post", "/api/v1/admin/apps/{app}/dead-letters/{id}/resolve", { params: { app, id } }),

  members: (app: string) => call("get", "/api/v1/admin/apps/{app}/members", { params: { app } }),
  setMember: (app: string, userId: string, role: Role) =>
    call("put", "/api/v1/admin/apps/{app}/members/{user_id}", { params: { app, user_id: userId }, body: { role } }),
  removeMember: (app: string, userId: string) =>
    call("delete", "/api/v1/admin/apps/{app}/members/{user_id}", { params: { app, user_id: userId } }),
  secrets: (app: string) => call("get", "/api/v1/admin/apps/{app}/secrets", { params: { app } }),
  putSecret: (app: string, name: string, value: unknown) =>
    call("post", "/api/v1/admin/apps/{app}/secrets", { params: { app }, body: { name, value } }),
  revealSecret: (app: string, name: string) =>
    call("post", "/api/v1/admin/apps/{app}/secrets/{name}/reveal", { params: { app, name } }),
  deleteSecret: (app: string, name: string) =>
    call("delete", "/api/v1/admin/apps/{app}/secrets/{name}", { params: { app, name } }),

  users: () => call("get", "/api/v1/admin/users", { query: { limit: 500 } }),
  createUser: (body: Schemas["CreateUser"]) => call("post", "/api/v1/admin/users", { body }),
  updateUser: (id: string, body: Schemas["UpdateUser"]) =>
    call("patch", "/api/v1/admin/users/{id}", { params: { id }, body }),
  deleteUser: (id: string) => call("delete", "/api/v1/admin/users/{id}", { params: { id } }),

  keys: () => call("get", "/api/v1/admin/api-keys", { query: { limit: 500 } }),
  createKey: (body: Schemas["CreateApiKey"]) => call("post", "/api/v1/admin/api-keys", { body }),
  deleteKey: (id: string) => call("delete", "/api/v1/admin/api-keys/{id}", { params: { id } }),
};

export const SCOPES: Scope[] = [
  "app:read",
  "app:admin",
  "script:read",
  "script:write",
  "script:invoke",
  "user:admin",
  "instance:admin",
];
export const ROLES: Role[] = ["viewer", "editor", "admin"];
