import { describe, expect, it } from "vitest";
import { guessContentType, parseHeaders, routeUrl } from "./http";

describe("test panel helpers", () => {
  it("parses header lines", () => {
    expect(parseHeaders("Authorization: Bearer pk_1\n\n# note\nX-A:  b:c ")).toEqual([
      ["Authorization", "Bearer pk_1"],
      ["X-A", "b:c"],
    ]);
    expect(() => parseHeaders("no colon")).toThrow('header line "no colon" needs "Name: value"');
    expect(() => parseHeaders(": value")).toThrow();
  });

  it("guesses JSON only for valid JSON", () => {
    expect(guessContentType('{"a":1}')).toBe("application/json");
    expect(guessContentType(" [1, 2] ")).toBe("application/json");
    expect(guessContentType("{not json")).toBe("text/plain; charset=utf-8");
    expect(guessContentType("hello")).toBe("text/plain; charset=utf-8");
  });

  it("builds the path-addressed URL", () => {
    expect(routeUrl("shop", "/hello?x=1")).toBe("/apps/shop/hello?x=1");
    expect(routeUrl("shop", "hello")).toBe("/apps/shop/hello");
  });
});
