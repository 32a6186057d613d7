import { describe, expect, it } from "vitest";
import { describeProblem, lineStarts, toDiagnostic } from "./errors";

const SRC = `// Greets the caller.
let name = "world";
let greeting = "hello " + ;
greeting
`;

describe("toDiagnostic", () => {
  it("puts the error at the server's line and column", () => {
    const d = toDiagnostic(SRC, { message: "Unexpected ';'", line: 3, column: 27 });
    const line3 = lineStarts(SRC)[2];
    expect(d.line).toBe(3);
    expect(d.from).toBe(line3 + 26);
    expect(SRC.slice(d.from, d.to)).toBe(";");
    expect(d.severity).toBe("error");
    expect(d.message).toBe("Unexpected ';'");
  });

  it("underlines the whole word at the column", () => {
    const d = toDiagnostic(SRC, { message: "unknown variable", line: 4, column: 1 });
    expect(SRC.slice(d.from, d.to)).toBe("greeting");
  });

  it("clamps a line past the end onto the last line", () => {
    const d = toDiagnostic("let a = 1;\nlet b", { message: "unexpected end", line: 9, column: 4 });
    expect(d.line).toBe(2);
    expect(d.from).toBeGreaterThanOrEqual(11);
    expect(d.to).toBeLessThanOrEqual(16);
  });

  it("clamps a column past the end of its line and underlines the line", () => {
    const text = "let a = (1 + 2\nlet b = 3;";
    const d = toDiagnostic(text, { message: "expecting ')'", line: 1, column: 80 });
    expect(d.line).toBe(1);
    expect(text.slice(d.from, d.to)).toBe("let a = (1 + 2");
  });

  it("without a position, marks line 1 and keeps the message", () => {
    const d = toDiagnostic(SRC, { message: "import cycle" });
    expect(d.line).toBe(1);
    expect(d.from).toBe(0);
    expect(d.message).toBe("import cycle");
  });

  it("copes with an empty document and nonsense positions", () => {
    const d = toDiagnostic("", { message: "empty", line: -4, column: 0 });
    expect(d).toMatchObject({ from: 0, to: 0, line: 1 });
    const e = toDiagnostic("abc", { message: "x", line: 1.7, column: 2.2 });
    expect(e.from).toBe(1);
  });
});

describe("describeProblem", () => {
  it("names the line and column", () => {
    expect(describeProblem({ message: "Unexpected ';'", line: 3, column: 27 })).toBe("line 3, column 27: Unexpected ';'");
    expect(describeProblem({ message: "m", line: 2 })).toBe("line 2: m");
    expect(describeProblem({ message: "m" })).toBe("m");
  });
});
