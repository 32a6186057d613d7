// Helpers of the test panel, kept out of the component so they are unit-tested.

/** `Name: value` lines (blank lines and `#` comments skipped) into header pairs. */
export function parseHeaders(text: string): [string, string][] {
  return text
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith("#"))
    .map((l) => {
      const i = l.indexOf(":");
      if (i <= 0) throw new Error(`header line "${l}" needs "Name: value"`);
      return [l.slice(0, i).trim(), l.slice(i + 1).trim()] as [string, string];
    });
}

/** The content type to send when the user gave none: JSON when it looks like JSON. */
export function guessContentType(body: string): string {
  const t = body.trim();
  if (/^[[{]/.test(t)) {
    try {
      JSON.parse(t);
      return "application/json";
    } catch {
      return "text/plain; charset=utf-8";
    }
  }
  return "text/plain; charset=utf-8";
}

/** The data-plane URL of `path` in app `slug` (same origin, path addressing). */
export function routeUrl(slug: string, path: string): string {
  return `/apps/${encodeURIComponent(slug)}${path.startsWith("/") ? path : "/" + path}`;
}
