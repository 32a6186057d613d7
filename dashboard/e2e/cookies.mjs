// The session cookie in real headless Chromium, against a real PiCloud server:
//
//   PICLOUD_URL=http://127.0.0.1:8080 PICLOUD_PLANTED_TOKEN=pcs_… node e2e/cookies.mjs
//
// The server has the instance admin below and an app `shop` whose route GET /plant
// answers with Set-Cookie and Clear-Site-Data (a script trying to fix or end the
// operator's session). PICLOUD_PLANTED_TOKEN is another user's valid session: what an
// attacker would plant. For plain HTTP and for TLS (as a proxy reports it with
// X-Forwarded-Proto), it signs in through the dashboard and checks that the browser
// keeps the cookie the server meant (`__Host-` and Secure over TLS, which Chromium
// accepts on http://127.0.0.1 as a potentially trustworthy origin), that the app
// route changes nothing, and that a planted cookie never signs the operator in as
// someone else. Exits non-zero on the first failure.
import { chromium } from "playwright-core";

const base = (process.env.PICLOUD_URL ?? "").replace(/\/$/, "");
const planted = process.env.PICLOUD_PLANTED_TOKEN ?? "";
const executablePath = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
if (!base || !planted) {
  console.error("set PICLOUD_URL and PICLOUD_PLANTED_TOKEN");
  process.exit(2);
}
const EMAIL = "admin@example.com";
const PASSWORD = "correct horse battery";
const host = new URL(base).hostname;

const check = (ok, what) => {
  if (!ok) throw new Error(what);
};

const browser = await chromium.launch({
  executablePath,
  headless: true,
  args: ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
});
let failed = false;
try {
  for (const mode of ["plain", "tls"]) {
    const tls = mode === "tls";
    console.log(`• ${mode}: sign in through the dashboard`);
    const context = await browser.newContext({
      extraHTTPHeaders: tls ? { "x-forwarded-proto": "https" } : {},
    });
    const page = await context.newPage();
    page.setDefaultTimeout(30000);
    await page.goto(`${base}/_/`);
    await page.getByLabel("Email").fill(EMAIL);
    await page.getByLabel("Password").fill(PASSWORD);
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByRole("heading", { level: 1, name: "Apps" }).waitFor();

    const sessions = async () =>
      (await context.cookies()).filter((c) => c.name.endsWith("picloud_session"));
    const jar = await sessions();
    check(jar.length === 1, `one session cookie, got ${JSON.stringify(jar)}`);
    const [cookie] = jar;
    const expected = tls
      ? { name: "__Host-picloud_session", path: "/", secure: true }
      : { name: "picloud_session", path: "/api", secure: false };
    for (const [k, v] of Object.entries(expected)) {
      check(cookie[k] === v, `${mode}: cookie ${k} is ${cookie[k]}, expected ${v}`);
    }
    check(cookie.httpOnly && cookie.sameSite === "Strict", `${mode}: HttpOnly, SameSite=Strict`);
    const me = () =>
      page.evaluate(async () => {
        const r = await fetch("/api/v1/auth/me");
        return r.ok ? (await r.json()).email : r.status;
      });
    check((await me()) === EMAIL, `${mode}: signed in as the admin`);

    console.log(`• ${mode}: an app route on the dashboard's origin cannot touch the session`);
    const answer = await page.goto(`${base}/apps/shop/plant`);
    check(answer.status() === 200, `the app route answered ${answer.status()}`);
    const after = await sessions();
    check(
      after.length === 1 && after[0].name === cookie.name && after[0].value === cookie.value,
      `${mode}: the session cookie changed: ${JSON.stringify(after)}`,
    );
    await page.goto(`${base}/_/`);
    await page.getByRole("heading", { level: 1, name: "Apps" }).waitFor();
    check((await me()) === EMAIL, `${mode}: still signed in as the admin`);

    console.log(`• ${mode}: a planted session never wins`);
    // What a sibling host could toss in: the plain name, under a longer path, so the
    // browser sends it first.
    await context.addCookies([
      { name: "picloud_session", value: planted, domain: host, path: "/api/v1", httpOnly: true },
    ]);
    const who = await me();
    if (tls) {
      check(who === EMAIL, `tls: the planted cookie was read (me: ${who})`);
    } else {
      check(who === 401, `plain: two session cookies must sign nobody in (me: ${who})`);
    }
    await context.close();
  }
  console.log("ok: the session cookie held");
} catch (e) {
  failed = true;
  console.error(`FAILED: ${e.stack ?? e.message}`);
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
