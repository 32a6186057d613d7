// End-to-end: the dashboard in real headless Chromium (Debian's `chromium`, driven by
// playwright-core; no browser download) against a real PiCloud server.
//
//   PICLOUD_URL=http://127.0.0.1:8080 PICLOUD_SETUP_TOKEN=pst_… node e2e/flow.mjs
//
// Set-up → sign out/in → create app → script with a compile error (shown at its
// line) → fix and save → bind a route → call it from the test panel (response and
// log line) → see the run in executions → create and revoke an API key → triggers,
// dead letters, KV → files (upload, preview, download, delete) → a pubsub trigger. Screenshots
// of each main page go to docs/screenshots/ (SCREENSHOT_DIR overrides). Exits non-zero
// on the first failure, or when the page logged an unexpected console error.
import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { deflateSync } from "node:zlib";

const here = dirname(fileURLToPath(import.meta.url));
const base = (process.env.PICLOUD_URL ?? "").replace(/\/$/, "");
const setupToken = process.env.PICLOUD_SETUP_TOKEN ?? "";
const shots = resolve(process.env.SCREENSHOT_DIR ?? join(here, "../../docs/screenshots"));
const executablePath = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
if (!base || !setupToken) {
  console.error("set PICLOUD_URL and PICLOUD_SETUP_TOKEN");
  process.exit(2);
}
mkdirSync(shots, { recursive: true });

const EMAIL = "admin@example.com";
const PASSWORD = "correct horse battery";
const BROKEN = `// Greets the caller.
let name = "world";
let greeting = "hello " + ;
greeting
`;
const FIXED = `// Greets the caller.
let name = ctx.request.query.name ?? "world";
log::info("greeting " + name);
kv::collection("visits").set(name, #{ name: name });
#{ greeting: "hello " + name }
`;

// A real PNG (RGB, 8 bits, a gradient) built here, so the preview has pixels to decode.
function png(width, height) {
  const crcTable = Array.from({ length: 256 }, (_, n) => {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    return c >>> 0;
  });
  const crc32 = (buf) => {
    let c = 0xffffffff;
    for (const b of buf) c = crcTable[(c ^ b) & 0xff] ^ (c >>> 8);
    return (c ^ 0xffffffff) >>> 0;
  };
  const chunk = (type, data) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const body = Buffer.concat([Buffer.from(type, "ascii"), data]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(body));
    return Buffer.concat([len, body, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([8, 2, 0, 0, 0], 8); // 8 bits, RGB, deflate, no filter method, no interlace
  const rows = [];
  for (let y = 0; y < height; y++) {
    rows.push(0); // filter: none
    for (let x = 0; x < width; x++) rows.push((x * 255) / (width - 1), (y * 255) / (height - 1), 160);
  }
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk("IHDR", ihdr),
    chunk("IDAT", deflateSync(Buffer.from(rows))),
    chunk("IEND", Buffer.alloc(0)),
  ]);
}

// Chromium logs every non-2xx fetch as "Failed to load resource"; these statuses are
// answers the flow provokes on purpose (a wrong password, a member's forbidden change,
// a compile error, a route clash, the test panel polling for an execution record).
const EXPECTED_STATUS = /Failed to load resource: the server responded with a status of (401|403|404|409|422)/;
const consoleErrors = [];
const expectedErrors = [];

const step = (name) => console.log(`• ${name}`);

const browser = await chromium.launch({
  executablePath,
  headless: true,
  args: ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
});
let failed = false;
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, colorScheme: "light" });
  const page = await context.newPage();
  page.setDefaultTimeout(30000);
  const watch = (p, label) => {
    p.on("console", (m) => {
      if (m.type() !== "error") return;
      (EXPECTED_STATUS.test(m.text()) ? expectedErrors : consoleErrors).push(`${label}: ${m.text()}`);
    });
    p.on("pageerror", (e) => {
      consoleErrors.push(`${label}: page error: ${e.message}`);
      console.error(`${label}: page error: ${e.stack ?? e.message}`);
    });
  };
  watch(page, "admin");
  const shot = (name, p = page) => p.screenshot({ path: join(shots, `${name}.png`) });
  const heading = (text) => page.getByRole("heading", { level: 1, name: text });

  step("first-run set-up");
  await page.goto(`${base}/_/?token=${encodeURIComponent(setupToken)}`);
  await page.getByText("No user exists yet").waitFor();
  await page.getByLabel("Email").fill(EMAIL);
  await page.getByLabel(/Password/).fill(PASSWORD);
  await shot("setup");
  await page.getByRole("button", { name: "Create admin" }).click();
  await heading("Apps").waitFor();
  if (new URL(page.url()).search) throw new Error("the set-up token stayed in the URL");

  step("sign out and sign in again");
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.getByRole("button", { name: "Sign in" }).waitFor();
  await page.getByLabel("Email").fill(EMAIL);
  await page.getByLabel("Password").fill("wrong password");
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("alert").waitFor();
  await page.getByLabel("Password").fill(PASSWORD);
  await shot("login");
  await page.getByRole("button", { name: "Sign in" }).click();
  await heading("Apps").waitFor();
  // A reload keeps the session (cookie) and the CSRF token (from /auth/me).
  await page.reload();
  await heading("Apps").waitFor();

  step("create an app");
  await page.getByLabel(/Slug/).fill("shop");
  await page.getByLabel(/Name/).fill("Shop");
  await page.getByRole("button", { name: "Create app" }).click();
  await heading("Shop").waitFor();

  step("write a script with a compile error");
  await page.getByRole("navigation", { name: "App sections" }).getByRole("link", { name: "Scripts" }).click();
  await heading("Scripts").waitFor();
  await page.getByLabel("Name").fill("hello");
  await page.getByRole("button", { name: "Create script" }).click();
  await page.getByTestId("editor").waitFor();
  const editor = page.locator(".cm-content");
  await editor.click();
  await page.keyboard.press("ControlOrMeta+a");
  await page.keyboard.insertText(BROKEN);
  await page.getByRole("button", { name: "Save" }).click();
  const problem = page.getByTestId("compile-error");
  await problem.waitFor();
  const line = await problem.getAttribute("data-line");
  if (line !== "3") throw new Error(`compile error reported at line ${line}, expected 3: ${await problem.textContent()}`);
  if (!(await problem.textContent())?.includes("line 3")) throw new Error("the message does not name line 3");
  // The diagnostic sits in the editor on line 3 (the lint gutter marks that line).
  const marked = page.locator(".cm-lintRange-error");
  await marked.first().waitFor();
  const markedLine = await marked.first().evaluate((el) => {
    const lineEl = el.closest(".cm-line");
    return [...document.querySelectorAll(".cm-content .cm-line")].indexOf(lineEl) + 1;
  });
  if (markedLine !== 3) throw new Error(`the error is underlined on line ${markedLine}, expected 3`);
  await shot("editor-error");

  step("completions offer ctx fields and SDK functions");
  await editor.click();
  await page.keyboard.press("ControlOrMeta+End");
  await page.keyboard.type("\nkv::");
  await page.locator(".cm-tooltip-autocomplete").getByText("get", { exact: true }).first().waitFor();
  await shot("editor-completions");
  await page.keyboard.press("Escape");
  await page.keyboard.type("\nctx.req");
  await page.locator(".cm-tooltip-autocomplete").getByText("request", { exact: true }).waitFor();
  // (Typed on rather than accepted with Enter: under load, Enter can land before the
  // list settles and insert a newline instead.)
  await page.keyboard.press("Escape");
  await page.keyboard.type("uest.");
  await page.locator(".cm-tooltip-autocomplete").getByText("headers", { exact: true }).waitFor();
  await page.keyboard.press("Escape");

  step("unsaved changes are guarded; fix and save");
  await editor.click();
  await page.keyboard.press("ControlOrMeta+a");
  await page.keyboard.insertText(FIXED);
  const editorUrl = page.url();
  await page.getByRole("navigation", { name: "App sections" }).getByRole("link", { name: "Routes" }).click();
  const discard = page.getByRole("dialog");
  await discard.getByText("unsaved changes").waitFor();
  await discard.getByRole("button", { name: "Cancel" }).click();
  await discard.waitFor({ state: "hidden" });
  if (page.url() !== editorUrl) throw new Error("left the editor with unsaved changes");
  await editor.click();
  await page.keyboard.press("ControlOrMeta+s");
  await page.getByTestId("save-state").filter({ hasText: "Saved" }).waitFor();
  await problem.waitFor({ state: "detached" });
  await shot("editor");

  step("bind a route");
  await page.getByRole("navigation", { name: "App sections" }).getByRole("link", { name: "Routes" }).click();
  await heading("Routes").waitFor();
  await page.getByLabel("Path").fill("/hello");
  await page.getByRole("button", { name: "Add route" }).click();
  const routeRow = page.getByRole("row").filter({ hasText: "/hello" });
  await routeRow.waitFor();
  // A clash is refused with the server's message, inline.
  await page.getByLabel("Path").fill("/hello");
  await page.getByRole("button", { name: "Add route" }).click();
  await page.getByRole("alert").waitFor();
  // Delete asks first.
  await page.getByLabel("Path").fill("/scratch");
  await page.getByRole("button", { name: "Add route" }).click();
  const scratch = page.getByRole("row").filter({ hasText: "/scratch" });
  await scratch.waitFor();
  await scratch.getByRole("button", { name: /Delete route/ }).click();
  await page.getByRole("dialog").getByRole("button", { name: "Delete" }).click();
  await scratch.waitFor({ state: "detached" });
  await shot("routes");

  step("call it from the test panel");
  await routeRow.getByRole("link", { name: "Test" }).click();
  await heading("Test a route").waitFor();
  await page.getByLabel(/^Path/).fill("/hello?name=Ada");
  await page.getByRole("button", { name: "Send" }).click();
  await page.getByTestId("test-status").filter({ hasText: "200" }).waitFor();
  const body = await page.getByTestId("test-body").textContent();
  if (!body?.includes('"greeting": "hello Ada"')) throw new Error(`unexpected body: ${body}`);
  await page.getByTestId("test-logs").getByText("greeting Ada").waitFor();
  await shot("test-panel");

  step("see the run in executions");
  await page.getByRole("navigation", { name: "App sections" }).getByRole("link", { name: "Executions" }).click();
  await heading("Executions").waitFor();
  const run = page.getByTestId("execution-row").first();
  await run.waitFor();
  await run.getByRole("button", { name: /Details of/ }).click();
  await page.getByText("greeting Ada").waitFor();
  await shot("executions");

  step("create and revoke an API key");
  await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "API keys" }).click();
  await heading("API keys").waitFor();
  await page.getByLabel("Name").fill("ci");
  await page.getByRole("button", { name: "Create key" }).click();
  const key = (await page.getByTestId("new-key").textContent())?.trim() ?? "";
  if (!key.startsWith("pk_")) throw new Error(`no key shown: ${key}`);
  const me = (k) => fetch(`${base}/api/v1/auth/me`, { headers: { authorization: `Bearer ${k}` } }).then((r) => r.status);
  if ((await me(key)) !== 200) throw new Error("the new key does not authenticate");
  await shot("api-keys");
  await page.getByRole("button", { name: "Done" }).click();
  await page.getByRole("button", { name: "Revoke ci" }).click();
  await page.getByRole("dialog").getByRole("button", { name: "Revoke" }).click();
  await page.getByTestId("key-row").waitFor({ state: "detached" });
  if ((await me(key)) !== 401) throw new Error("the revoked key still authenticates");

  step("a failing trigger dead-letters its event");
  const sections = page.getByRole("navigation", { name: "App sections" });
  await page.goto(`${base}/_/apps/shop/scripts`);
  await heading("Scripts").waitFor();
  await page.getByLabel("Name").fill("audit");
  await page.getByRole("button", { name: "Create script" }).click();
  await page.locator(".cm-content").click();
  await page.keyboard.press("ControlOrMeta+a");
  await page.keyboard.insertText('throw "the audit service is down";\n');
  await page.getByRole("button", { name: "Save" }).click();
  await page.getByTestId("save-state").filter({ hasText: "Saved" }).waitFor();
  await sections.getByRole("link", { name: "Triggers" }).click();
  await heading("Triggers").waitFor();
  await page.getByLabel("Script").selectOption({ label: "audit" });
  await page.getByLabel("Collection").fill("visits");
  await page.getByLabel("set").check();
  await page.getByText("Retry policy").click();
  await page.getByLabel("Max attempts").fill("1");
  await page.getByRole("button", { name: "Create trigger" }).click();
  const triggerRow = page.getByRole("row").filter({ hasText: "visits on set" });
  await triggerRow.waitFor();
  await triggerRow.getByRole("button", { name: "Disable" }).click();
  await triggerRow.getByText("disabled").waitFor();
  await triggerRow.getByRole("button", { name: "Enable" }).click();
  await triggerRow.getByText("enabled").waitFor();
  // Cron (the form offers it because the server's OpenAPI document lists the kind).
  await page.getByLabel("Kind").selectOption("cron");
  await page.getByLabel("Script").selectOption({ label: "audit" });
  await page.getByLabel(/^Schedule/).fill("0 0 0 1 1 *");
  await page.getByLabel(/^Time zone/).fill("Europe/Berlin");
  await page.getByRole("button", { name: "Create trigger" }).click();
  const cronRow = page.getByRole("row").filter({ hasText: "0 0 0 1 1 * (Europe/Berlin), next" });
  await cronRow.waitFor();
  await shot("triggers");
  await cronRow.getByRole("button", { name: /Delete trigger/ }).click();
  await page.getByRole("dialog").getByRole("button", { name: "Delete" }).click();
  await cronRow.waitFor({ state: "detached" });
  await page.goto(`${base}/_/apps/shop/test?method=GET&path=${encodeURIComponent("/hello?name=Grace")}`);
  await page.getByRole("button", { name: "Send" }).click();
  await page.getByTestId("test-status").filter({ hasText: "200" }).waitFor();
  // The trigger runs through the outbox: wait for its dead letter (reloading the list).
  await page.goto(`${base}/_/apps/shop/dead-letters`);
  const deadline = Date.now() + 30000;
  const letter = page.getByRole("row").filter({ hasText: "the audit service is down" }).first();
  while (!(await letter.isVisible())) {
    if (Date.now() > deadline) throw new Error("no dead letter appeared");
    await page.waitForTimeout(500);
    await page.reload();
    await heading("Dead letters").waitFor();
    await page.getByRole("status").filter({ hasText: "Loading" }).waitFor({ state: "detached" });
  }
  await letter.getByRole("button", { name: /Payload of/ }).click();
  await page.getByText('"key": "Grace"').waitFor();
  await shot("dead-letters");

  step("the apps list shows the unresolved dead letter");
  await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Apps" }).click();
  await heading("Apps").waitFor();
  await page.getByRole("cell", { name: "shop", exact: true }).waitFor();
  await page.getByRole("link", { name: "1 unresolved" }).waitFor();
  await shot("apps");
  await page.getByRole("link", { name: "1 unresolved" }).click();
  await heading("Dead letters").waitFor();
  // Replay: the handler still fails, so a new dead letter names the one replayed.
  await page.getByRole("button", { name: "Replay" }).first().click();
  await page.getByRole("dialog").getByRole("button", { name: "Replay" }).click();
  await page.getByText(/^Replayed evt_/).waitFor();
  const replayDeadline = Date.now() + 30000;
  // An unresolved row (it has a Replay button: the replayed one no longer does), read
  // from a fresh list each time.
  const again = page
    .getByRole("row")
    .filter({ hasText: "the audit service is down" })
    .filter({ has: page.getByRole("button", { name: "Replay" }) })
    .first();
  do {
    if (Date.now() > replayDeadline) throw new Error("the replay was not dead-lettered again");
    await page.waitForTimeout(500);
    await page.reload();
    await heading("Dead letters").waitFor();
    await page.getByRole("status").filter({ hasText: "Loading" }).waitFor({ state: "detached" });
  } while (!(await again.isVisible()));
  await again.getByRole("button", { name: /Payload of/ }).click();
  await page.getByText(/replay of dlq_/).waitFor();
  await page.getByRole("button", { name: "Resolve" }).first().click();
  await page.getByText("No unresolved dead letters").waitFor();

  step("executions filter by status and source");
  await sections.getByRole("link", { name: "Executions" }).click();
  await heading("Executions").waitFor();
  await page.getByLabel("Status").selectOption("error");
  await page.getByLabel("Source").selectOption("kv");
  await page.getByTestId("execution-row").filter({ hasText: "hello" }).first().waitFor({ state: "detached" });
  await page.getByTestId("execution-row").first().getByText("audit").waitFor();

  step("delete the trigger");
  await sections.getByRole("link", { name: "Triggers" }).click();
  await heading("Triggers").waitFor();
  await page.getByRole("button", { name: /Delete trigger/ }).click();
  await page.getByRole("dialog").getByRole("button", { name: "Delete" }).click();
  await page.getByText("No triggers.").waitFor();

  step("the KV browser shows what the route wrote");
  await sections.getByRole("link", { name: "KV" }).click();
  await heading("KV browser").waitFor();
  await page.getByLabel("Collection").fill("visits");
  await page.getByRole("button", { name: "Browse" }).click();
  await page.getByRole("cell", { name: "Grace", exact: true }).waitFor();
  await page.getByRole("cell", { name: "Ada", exact: true }).waitFor();
  await shot("kv");

  step("files: upload, list, filter, preview, download, delete");
  await sections.getByRole("link", { name: "Files" }).click();
  await heading("Files").waitFor();
  await page.getByText("No files.").waitFor();
  const uploadForm = page.getByRole("form", { name: "Upload a file" });
  const fileRow = (name) => page.getByTestId("file-row").filter({ has: page.getByRole("cell", { name, exact: true }) });
  // The image: the request carries the File itself (its type, the CSRF header).
  await uploadForm.getByLabel("Collection").fill("avatars");
  await uploadForm.getByLabel("File").setInputFiles({ name: "gradient.png", mimeType: "image/png", buffer: png(48, 32) });
  const uploaded = page.waitForRequest((r) => r.method() === "POST" && r.url().includes("/files/avatars?name=gradient.png"));
  await uploadForm.getByRole("button", { name: "Upload" }).click();
  const upReq = await uploaded;
  if (!(await upReq.headerValue("content-type"))?.startsWith("image/png")) throw new Error("the upload was not sent as image/png");
  if (!(await upReq.headerValue("x-csrf-token"))) throw new Error("the upload carried no CSRF header");
  await page.getByRole("status").filter({ hasText: "Uploaded gradient.png" }).waitFor();
  await fileRow("gradient.png").waitFor();
  // An HTML file, renamed on the way: active content, so only ever a download.
  await uploadForm.getByLabel("Collection").fill("reports");
  await uploadForm.getByLabel("File").setInputFiles({
    name: "page.html",
    mimeType: "text/html",
    buffer: Buffer.from("<!doctype html><script>document.title = 'ran'</script><p>hi</p>"),
  });
  await uploadForm.getByLabel(/^Name/).fill("report.html");
  await uploadForm.getByRole("button", { name: "Upload" }).click();
  const htmlRow = fileRow("report.html");
  await htmlRow.waitFor();
  await fileRow("gradient.png").getByRole("cell", { name: "avatars", exact: true }).waitFor();
  await htmlRow.getByRole("cell", { name: "reports", exact: true }).waitFor();
  await htmlRow.getByText("text/html").waitFor();
  if (!(await htmlRow.getByText(/^\d+ B$/).count())) throw new Error("the size is not shown in bytes");
  // The preview renders (the session cookie authenticates the <img> GET).
  const preview = page.getByRole("img", { name: "Preview of gradient.png" });
  await preview.waitFor();
  await page.waitForFunction((img) => img.complete && img.naturalWidth === 48, await preview.elementHandle());
  if (await htmlRow.getByRole("img").count()) throw new Error("an HTML file got an image preview");
  // The HTML file downloads as an attachment of opaque bytes.
  const htmlLink = htmlRow.getByRole("link", { name: "Download report.html" });
  const served = await htmlLink.evaluate(async (a) => {
    const r = await fetch(a.href);
    return {
      status: r.status,
      disposition: r.headers.get("content-disposition") ?? "",
      type: r.headers.get("content-type") ?? "",
      nosniff: r.headers.get("x-content-type-options") ?? "",
      body: await r.text(),
    };
  });
  if (served.status !== 200) throw new Error(`download answered ${served.status}`);
  if (!served.disposition.startsWith("attachment")) throw new Error(`the HTML file is not an attachment: ${served.disposition}`);
  if (!served.disposition.includes("report.html")) throw new Error(`the download is not named report.html: ${served.disposition}`);
  if (served.type !== "application/octet-stream") throw new Error(`the HTML file is served as ${served.type}`);
  if (served.nosniff !== "nosniff") throw new Error("no X-Content-Type-Options: nosniff");
  if (!served.body.includes("<p>hi</p>")) throw new Error("the downloaded bytes differ");
  const [download] = await Promise.all([page.waitForEvent("download"), htmlLink.click()]);
  if (download.suggestedFilename() !== "report.html") throw new Error(`downloaded as ${download.suggestedFilename()}`);
  // One collection, then all again.
  await page.getByLabel("Filter by collection").fill("avatars");
  await page.getByRole("button", { name: "Show" }).click();
  await htmlRow.waitFor({ state: "detached" });
  await fileRow("gradient.png").waitFor();
  await page.getByLabel("Filter by collection").fill("");
  await page.getByRole("button", { name: "Show" }).click();
  await htmlRow.waitFor();
  await preview.waitFor();
  await page.waitForFunction((img) => img.complete && img.naturalWidth > 0, await preview.elementHandle());
  await shot("files");
  // Delete asks first; Cancel keeps the file.
  await htmlRow.getByRole("button", { name: "Delete report.html" }).click();
  await page.getByRole("dialog").getByRole("button", { name: "Cancel" }).click();
  await page.getByRole("dialog").waitFor({ state: "hidden" });
  await htmlRow.getByRole("button", { name: "Delete report.html" }).click();
  await page.getByRole("dialog").getByRole("button", { name: "Delete" }).click();
  await htmlRow.waitFor({ state: "detached" });
  await page.reload();
  await fileRow("gradient.png").waitFor();
  if (await htmlRow.count()) throw new Error("the deleted file is listed again");
  // A slower upload (the network throttled) shows its progress on the way.
  const cdp = await context.newCDPSession(page);
  await cdp.send("Network.emulateNetworkConditions", { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: 256 * 1024 });
  await uploadForm.getByLabel("Collection").fill("bulk");
  await uploadForm.getByLabel("File").setInputFiles({ name: "bulk.bin", mimeType: "application/octet-stream", buffer: Buffer.alloc(512 * 1024, 7) });
  await uploadForm.getByRole("button", { name: "Upload" }).click();
  const progress = uploadForm.getByRole("progressbar", { name: "Upload progress" });
  await page.waitForFunction((bar) => Number(bar?.getAttribute("value")) > 0 && Number(bar?.getAttribute("value")) < 100, await progress.elementHandle());
  await page.getByRole("status").filter({ hasText: "Uploaded bulk.bin (512 KiB) to bulk." }).waitFor();
  await progress.waitFor({ state: "detached" });
  await cdp.send("Network.emulateNetworkConditions", { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1 });
  await cdp.detach();
  await fileRow("bulk.bin").getByText("512 KiB").waitFor();

  step("a pubsub trigger on orders.*");
  await sections.getByRole("link", { name: "Triggers" }).click();
  await heading("Triggers").waitFor();
  await page.getByLabel("Kind").selectOption("pubsub");
  await page.getByLabel("Script").selectOption({ label: "audit" });
  await page.getByText("exact, prefix.* or *").waitFor();
  await page.getByLabel(/^Topic pattern/).fill("orders.*.new");
  await page.getByRole("button", { name: "Create trigger" }).click();
  await page.getByRole("alert").filter({ hasText: "(topic)" }).waitFor();
  await page.getByLabel(/^Topic pattern/).fill("orders.*");
  await page.getByRole("button", { name: "Create trigger" }).click();
  const pubsubRow = page.getByRole("row").filter({ hasText: "topic orders.*" });
  await pubsubRow.waitFor();
  await pubsubRow.getByText("pubsub", { exact: true }).waitFor();
  if (await page.getByRole("alert").count()) throw new Error("the error stayed after a successful create");
  // The files kind is offered too, with its ops.
  await page.getByLabel("Kind").selectOption("files");
  await page.getByLabel("Collection").fill("avatars");
  await page.getByLabel("update").check();
  await page.getByRole("button", { name: "Create trigger" }).click();
  await page.getByRole("row").filter({ hasText: "avatars on update" }).waitFor();

  step("secrets: set, masked, reveal behind a confirm, hide, delete");
  await sections.getByRole("link", { name: "Secrets" }).click();
  await heading("Secrets").waitFor();
  const secretForm = page.locator("form").filter({ hasText: "Set a secret" });
  await secretForm.getByLabel("Name").fill("STRIPE_KEY");
  await secretForm.getByLabel("Value").fill("sk_test_e2e");
  await secretForm.getByRole("button", { name: "Save" }).click();
  const secretRow = page.getByRole("row").filter({ hasText: "STRIPE_KEY" });
  await secretRow.waitFor();
  if (await page.getByText("sk_test_e2e").count()) throw new Error("a secret's value is shown before a reveal");
  await secretRow.getByRole("button", { name: "Reveal" }).click();
  await page.getByRole("dialog").getByRole("button", { name: "Cancel" }).click();
  await page.getByRole("dialog").waitFor({ state: "hidden" });
  if (await page.getByText("sk_test_e2e").count()) throw new Error("revealed without a confirm");
  await secretRow.getByRole("button", { name: "Reveal" }).click();
  await page.getByRole("dialog").getByRole("button", { name: "Reveal" }).click();
  await secretRow.getByText("sk_test_e2e").waitFor();
  await secretRow.getByRole("button", { name: "Hide" }).click();
  await secretRow.getByText("sk_test_e2e").waitFor({ state: "detached" });
  await secretRow.getByRole("button", { name: "Delete" }).click();
  await page.getByRole("dialog").getByRole("button", { name: "Delete" }).click();
  await secretRow.waitFor({ state: "detached" });

  step("the other pages");
  for (const [tab, title, name] of [
    ["", "Shop", "overview"],
  ]) {
    await page.goto(`${base}/_/apps/shop${tab ? "/" + tab : ""}`);
    await heading(title).waitFor();
    await page.getByRole("status").filter({ hasText: "Loading" }).waitFor({ state: "detached" });
    await shot(name);
  }
  step("users and members");
  await page.goto(`${base}/_/users`);
  await heading("Users").waitFor();
  await page.getByLabel("Email").fill("dev@example.com");
  await page.getByLabel(/Password/).fill("another long password");
  await page.getByRole("button", { name: "Create user" }).click();
  await page.getByRole("cell", { name: "dev@example.com", exact: true }).waitFor();
  await shot("users");
  // A new password revokes the user's API keys unless the box is unticked.
  await page.getByRole("button", { name: "Set a new password for dev@example.com" }).click();
  const pwForm = page.locator("form", { hasText: "New password for dev@example.com" });
  if (!(await pwForm.getByLabel("also revoke their API keys").isChecked())) throw new Error("revoking API keys is not the default");
  await pwForm.getByLabel(/Password/).fill("another long password");
  const patched = page.waitForRequest((r) => r.method() === "PATCH" && r.url().includes("/api/v1/admin/users/"));
  await pwForm.getByRole("button", { name: "Set password" }).click();
  if ((await patched).postDataJSON().revoke_api_keys !== true) throw new Error("the password change did not ask to revoke API keys");
  await page.getByRole("status").filter({ hasText: "their API keys are revoked" }).waitFor();
  await page.goto(`${base}/_/apps/shop/members`);
  await heading("Members").waitFor();
  await page.getByLabel("User").selectOption({ label: "dev@example.com" });
  await page.locator('select[name="role"]').selectOption("editor");
  await page.getByRole("button", { name: "Add" }).click();
  await page.getByRole("cell", { name: "dev@example.com", exact: true }).waitFor();
  await shot("members");

  step("a member sees only what their role allows");
  const devContext = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const dev = await devContext.newPage();
  watch(dev, "member");
  await dev.goto(`${base}/_/apps/shop/routes`);
  await dev.getByLabel("Email").fill("dev@example.com");
  await dev.getByLabel("Password").fill("another long password");
  await dev.getByRole("button", { name: "Sign in" }).click();
  // Signing in keeps the page asked for.
  await dev.getByRole("heading", { level: 1, name: "Routes" }).waitFor();
  if (await dev.getByRole("link", { name: "Users" }).count()) throw new Error("a member sees the Users page link");
  await dev.getByLabel("Path").fill("/editor-route");
  await dev.getByRole("button", { name: "Add route" }).click();
  // An editor may not manage routes: the API's 403 message is shown inline.
  await dev.getByRole("alert").waitFor();
  await dev.goto(`${base}/_/`);
  await dev.getByRole("cell", { name: "shop", exact: true }).waitFor();
  if (await dev.getByRole("button", { name: "Create app" }).count()) throw new Error("a member may create apps");

  step("a member changes their own password");
  await dev.getByRole("link", { name: "dev@example.com" }).click();
  await dev.getByRole("heading", { level: 1, name: "Your account" }).waitFor();
  const own = dev.getByTestId("password-form");
  if (!(await own.getByLabel("also revoke my API keys").isChecked())) throw new Error("revoking my API keys is not the default");
  await own.getByLabel("Current password").fill("not my password");
  await own.getByLabel(/New password/).fill("a brand new password");
  await own.getByLabel("Repeat it").fill("a brand new password");
  await own.getByRole("button", { name: "Change password" }).click();
  await own.getByRole("alert").filter({ hasText: "current password is wrong" }).waitFor();
  await own.getByLabel("Current password").fill("another long password");
  await own.getByRole("button", { name: "Change password" }).click();
  await own.getByRole("status").filter({ hasText: "Password changed" }).waitFor();
  await devContext.close();

  step("keyboard: the apps page is reachable by Tab");
  await page.goto(`${base}/_/`);
  await page.getByRole("cell", { name: "shop", exact: true }).waitFor();
  const reached = [];
  for (let i = 0; i < 30 && !reached.includes("Create app"); i++) {
    await page.keyboard.press("Tab");
    reached.push(await page.evaluate(() => document.activeElement?.textContent?.trim() || document.activeElement?.getAttribute("name") || ""));
  }
  for (const want of ["Apps", "API keys", "Users", "Sign out", "shop", "Create app"]) {
    if (!reached.includes(want)) throw new Error(`Tab never reached "${want}": ${JSON.stringify(reached)}`);
  }

  step("phone width and dark mode");
  const signedIn = await context.storageState();
  const phone = await browser.newPage({ viewport: { width: 390, height: 844 }, colorScheme: "dark", storageState: signedIn });
  watch(phone, "phone");
  await phone.goto(`${base}/_/apps/shop/scripts`);
  await phone.getByRole("heading", { level: 1, name: "Scripts" }).waitFor();
  const overflow = await phone.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  if (overflow > 1) throw new Error(`the scripts page scrolls sideways on a phone (${overflow}px)`);
  await shot("phone-scripts-dark", phone);
  for (const path of ["", "apps/shop", "apps/shop/routes", "apps/shop/test", "apps/shop/executions", "apps/shop/triggers", "apps/shop/dead-letters", "apps/shop/files", "keys", "users"]) {
    await phone.goto(`${base}/_/${path}`);
    await phone.getByRole("heading", { level: 1 }).first().waitFor();
    await phone.getByRole("status").filter({ hasText: "Loading" }).waitFor({ state: "detached" });
    const wide = await phone.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    if (wide > 1) throw new Error(`/_/${path} scrolls sideways on a phone (${wide}px)`);
  }
  await phone.goto(`${base}/_/apps/shop/scripts`);
  await phone.getByRole("link", { name: "hello" }).click();
  await phone.locator(".cm-content").waitFor();
  await shot("phone-editor-dark", phone);
  await phone.getByRole("button", { name: "Menu" }).click();
  await phone.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "API keys" }).waitFor();
  await phone.close();
  const dark = await browser.newPage({ viewport: { width: 1280, height: 800 }, colorScheme: "dark", storageState: signedIn });
  watch(dark, "dark");
  await dark.goto(`${base}/_/apps/shop/scripts`);
  await dark.getByRole("link", { name: "hello" }).click();
  await dark.locator(".cm-content").waitFor();
  await shot("editor-dark", dark);
  await dark.close();

  if (consoleErrors.length) throw new Error(`console errors:\n${consoleErrors.join("\n")}`);
  console.log(`(${expectedErrors.length} expected non-2xx answers logged by the browser)`);
  console.log(`ok: the dashboard flow passed; screenshots in ${shots}`);
} catch (e) {
  failed = true;
  console.error(`FAILED: ${e instanceof Error ? e.stack : e}`);
  try {
    const pages = browser.contexts().flatMap((c) => c.pages());
    const at = join(tmpdir(), "picloud-e2e-failure.png");
    if (pages[0]) await pages[0].screenshot({ path: at });
    console.error(`screenshot of the failure: ${at}`);
  } catch {}
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
