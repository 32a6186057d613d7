import { afterEach, describe, expect, it, vi } from "vitest";
import { ApiError, api, apiUrl, call, errorFromResponse, sendBytes, setCsrfToken, setUnauthorizedHandler } from "./client";

function reply(status: number, body: unknown, statusText = "") {
  const text = body === undefined ? "" : typeof body === "string" ? body : JSON.stringify(body);
  return vi.fn(async () => new Response(status === 204 ? null : text, { status, statusText }));
}

afterEach(() => {
  setCsrfToken(null);
  setUnauthorizedHandler(null);
  vi.unstubAllGlobals();
});

describe("errorFromResponse", () => {
  it("reads the error envelope with all its fields", () => {
    const e = errorFromResponse(
      422,
      "Unprocessable Entity",
      JSON.stringify({ error: { code: "invalid", message: "the script does not compile: Unexpected ';'", line: 3, column: 27 } }),
    );
    expect(e).toBeInstanceOf(ApiError);
    expect(e.status).toBe(422);
    expect(e.code).toBe("invalid");
    expect(e.message).toBe("the script does not compile: Unexpected ';'");
    expect(e.line).toBe(3);
    expect(e.column).toBe(27);
    expect(e.field).toBeUndefined();
  });

  it("keeps field and execution id", () => {
    const e = errorFromResponse(500, "", JSON.stringify({ error: { code: "script_error", message: "boom", execution_id: "exe_1", field: null } }));
    expect(e.executionId).toBe("exe_1");
    expect(e.field).toBeUndefined();
    const f = errorFromResponse(422, "", JSON.stringify({ error: { code: "invalid", message: "bad slug", field: "slug" } }));
    expect(f.field).toBe("slug");
  });

  it("never shows a proxy's HTML page", () => {
    const e = errorFromResponse(502, "Bad Gateway", "<html><body>nginx</body></html>");
    expect(e.message).toBe("Bad Gateway");
    expect(e.code).toBe("http_502");
  });

  it("falls back to the status when the body is empty or not an envelope", () => {
    expect(errorFromResponse(503, "", "").message).toBe("request failed with status 503");
    expect(errorFromResponse(400, "Bad Request", '{"oops":1}').message).toBe('{"oops":1}');
    expect(errorFromResponse(500, "", "x".repeat(500)).message).toHaveLength(200);
  });
});

describe("call", () => {
  it("fills path parameters (encoded) and drops empty query values", async () => {
    const f = reply(200, { items: [], next_cursor: null });
    await call("get", "/api/v1/admin/apps/{app}/executions", { params: { app: "a b" }, query: { status: "ok", source: "", script_id: undefined } }, f);
    expect(f).toHaveBeenCalledWith("/api/v1/admin/apps/a%20b/executions?status=ok", expect.anything());
  });

  it("sends the CSRF token on changes only", async () => {
    setCsrfToken("csrf-1");
    const get = reply(200, { items: [] });
    await call("get", "/api/v1/admin/apps", {}, get);
    expect((get.mock.calls[0] as unknown as [string, RequestInit])[1].headers).not.toHaveProperty("x-csrf-token");
    const post = reply(201, { id: "app_1", slug: "shop" });
    await call("post", "/api/v1/admin/apps", { body: { slug: "shop" } }, post);
    const init = (post.mock.calls[0] as unknown as [string, RequestInit])[1];
    expect(init.headers).toMatchObject({ "x-csrf-token": "csrf-1", "content-type": "application/json" });
    expect(init.body).toBe('{"slug":"shop"}');
    expect(init.credentials).toBe("same-origin");
  });

  it("throws the API's error and reports a 401 as signed out", async () => {
    const signedOut = vi.fn();
    setUnauthorizedHandler(signedOut);
    await expect(call("get", "/api/v1/admin/apps", {}, reply(401, { error: { code: "unauthorized", message: "sign in" } }))).rejects.toMatchObject({
      status: 401,
      code: "unauthorized",
      message: "sign in",
    });
    expect(signedOut).toHaveBeenCalledOnce();
    // The login form's own 401 (wrong password) is not "signed out".
    await expect(
      call("post", "/api/v1/auth/login", { body: { email: "a@b.c", password: "x" }, quiet401: true }, reply(401, { error: { code: "unauthorized", message: "wrong email or password" } })),
    ).rejects.toThrow("wrong email or password");
    expect(signedOut).toHaveBeenCalledOnce();
  });

  it("turns a network failure into a readable error", async () => {
    const f = vi.fn(async () => {
      throw new TypeError("Failed to fetch");
    });
    const e = await call("get", "/api/v1/admin/apps", {}, f).catch((x) => x);
    expect(e).toBeInstanceOf(ApiError);
    expect(e.code).toBe("network");
    expect(e.message).toContain("Failed to fetch");
  });

  it("returns nothing for 204 and rejects a 200 that is not JSON", async () => {
    await expect(call("delete", "/api/v1/admin/routes/{id}", { params: { id: "rte_1" } }, reply(204, undefined))).resolves.toBeUndefined();
    await expect(call("get", "/api/v1/admin/apps", {}, reply(200, "<html>"))).rejects.toMatchObject({ code: "bad_response" });
  });

  it("puts a compile error's position on the thrown error (the editor reads it)", async () => {
    vi.stubGlobal("fetch", reply(422, { error: { code: "invalid", message: "Unexpected ';'", line: 3, column: 27 } }));
    const e = await api.updateScript("shop", "scr_1", { source: "x" }).catch((x) => x);
    expect(e).toMatchObject({ line: 3, column: 27, code: "invalid" });
  });
});

describe("sendBytes", () => {
  class FakeXhr {
    status = 0;
    statusText = "";
    responseText = "";
    withCredentials = false;
    upload: { onprogress: ((e: ProgressEvent) => void) | null } = { onprogress: null };
    onload: (() => void) | null = null;
    onerror: (() => void) | null = null;
    onabort: (() => void) | null = null;
    opened: [string, string] | null = null;
    headers: Record<string, string> = {};
    sent: Blob | null = null;
    open(method: string, url: string) {
      this.opened = [method, url];
    }
    setRequestHeader(name: string, value: string) {
      this.headers[name] = value;
    }
    send(body: Blob) {
      this.sent = body;
    }
    abort() {
      this.onabort?.();
    }
    answer(status: number, body: unknown) {
      this.status = status;
      this.responseText = JSON.stringify(body);
      this.onload?.();
    }
  }

  it("sends the blob itself with its type, the CSRF header and progress", async () => {
    setCsrfToken("tok");
    const xhr = new FakeXhr();
    const blob = new Blob([new Uint8Array([1, 2, 3])], { type: "image/png" });
    const seen: [number, number][] = [];
    const url = "/api/v1/admin/apps/shop/files/avatars?name=a+b.png";
    expect(apiUrl("/api/v1/admin/apps/{app}/files/{collection}", { app: "shop", collection: "avatars" }, { name: "a b.png" })).toBe(url);
    const p = sendBytes<{ id: string }>("POST", url, blob, { onProgress: (l, t) => seen.push([l, t]) }, () => xhr);
    expect(xhr.opened).toEqual(["POST", url]);
    expect(xhr.sent).toBe(blob);
    expect(xhr.withCredentials).toBe(true);
    expect(xhr.headers["content-type"]).toBe("image/png");
    expect(xhr.headers["x-csrf-token"]).toBe("tok");
    xhr.upload.onprogress?.({ lengthComputable: true, loaded: 2, total: 3 } as ProgressEvent);
    xhr.answer(201, { id: "fil_1" });
    expect(await p).toEqual({ id: "fil_1" });
    expect(seen).toEqual([
      [2, 3],
      [3, 3],
    ]);
  });

  it("turns an error answer into an ApiError and an untyped blob into octet-stream", async () => {
    const xhr = new FakeXhr();
    const p = sendBytes("PUT", "/x", new Blob(["hi"]), {}, () => xhr);
    expect(xhr.headers["content-type"]).toBe("application/octet-stream");
    expect(xhr.headers["x-csrf-token"]).toBeUndefined();
    xhr.answer(413, { error: { code: "payload_too_large", message: "the file is larger than 10 MiB" } });
    await expect(p).rejects.toMatchObject({ status: 413, code: "payload_too_large", message: "the file is larger than 10 MiB" });
  });
});
