export function ago(iso: string | null | undefined, now = Date.now()): string {
  if (!iso) return "—";
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return iso;
  const s = Math.round((now - t) / 1000);
  if (s < 5) return "just now";
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ago`;
  return new Date(t).toISOString().slice(0, 16).replace("T", " ");
}

export function pretty(value: unknown): string {
  if (value === undefined) return "";
  if (typeof value === "string") return value;
  return JSON.stringify(value, null, 2);
}

export function errMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** A byte count for people: `812 B`, `1.5 KiB`, `23 MiB`. */
export function humanSize(bytes: number | null | undefined): string {
  if (bytes == null || !Number.isFinite(bytes) || bytes < 0) return "—";
  if (bytes < 1024) return `${bytes} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let v = bytes / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v < 10 ? v.toFixed(1) : Math.round(v)} ${units[i]}`;
}

// The raster types the server serves inline (API.md "Serving user bytes"); SVG is not
// one of them (it can carry script), so it is never previewed.
const RASTER = ["image/png", "image/apng", "image/jpeg", "image/gif", "image/webp", "image/avif", "image/bmp", "image/x-icon", "image/vnd.microsoft.icon"];

/** Whether a file of `contentType` may be previewed as an `<img>`. */
export function isRasterImage(contentType: string | null | undefined): boolean {
  const essence = (contentType ?? "").split(";")[0].trim().toLowerCase();
  return RASTER.includes(essence);
}
