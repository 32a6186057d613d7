import { describe, expect, it } from "vitest";
import { humanSize, isRasterImage } from "./format";

describe("humanSize", () => {
  it("prints bytes, then binary units", () => {
    expect(humanSize(0)).toBe("0 B");
    expect(humanSize(812)).toBe("812 B");
    expect(humanSize(1536)).toBe("1.5 KiB");
    expect(humanSize(20 * 1024 * 1024)).toBe("20 MiB");
    expect(humanSize(3 * 1024 ** 3)).toBe("3.0 GiB");
    expect(humanSize(undefined)).toBe("—");
  });
});

describe("isRasterImage", () => {
  it("previews raster images only", () => {
    expect(isRasterImage("image/png")).toBe(true);
    expect(isRasterImage("IMAGE/JPEG; charset=binary")).toBe(true);
    expect(isRasterImage("image/svg+xml")).toBe(false);
    expect(isRasterImage("text/html")).toBe(false);
    expect(isRasterImage("")).toBe(false);
  });
});
