// Maps an API compile error (1-based `line`/`column`) onto the editor's document, so
// the message is shown at the place the server named. Pure: tested without a browser.

export interface CompileProblem {
  message: string;
  line?: number;
  column?: number;
}

export interface Diagnostic {
  from: number;
  to: number;
  severity: "error";
  message: string;
  /** 1-based line the diagnostic sits on (for the inline summary). */
  line: number;
}

/** Offsets of the start of every line of `text`. */
export function lineStarts(text: string): number[] {
  const starts = [0];
  for (let i = 0; i < text.length; i++) if (text[i] === "\n") starts.push(i + 1);
  return starts;
}

/**
 * The span to underline: from the named column to the end of the token there (or one
 * character), clamped into the document. A line past the end lands on the last line;
 * a missing line lands on line 1 (the message still shows).
 */
export function toDiagnostic(text: string, problem: CompileProblem): Diagnostic {
  const starts = lineStarts(text);
  const lineCount = starts.length;
  const line = Math.min(Math.max(1, Math.trunc(problem.line ?? 1)), lineCount);
  const lineStart = starts[line - 1];
  const lineEnd = line < lineCount ? starts[line] - 1 : text.length;
  const col = Math.max(1, Math.trunc(problem.column ?? 1));
  const from = Math.min(lineStart + col - 1, lineEnd);
  let to = from;
  while (to < lineEnd && /[\w$]/.test(text[to])) to++;
  if (to === from) to = Math.min(from + 1, lineEnd);
  // A problem at the very end of the line (an unexpected end) underlines the line.
  if (to === from && lineEnd > lineStart) return { from: lineStart, to: lineEnd, severity: "error", message: problem.message, line };
  return { from, to, severity: "error", message: problem.message, line };
}

/** The one-line summary shown under the editor: `line 3, column 7: message`. */
export function describeProblem(problem: CompileProblem): string {
  if (problem.line == null) return problem.message;
  const where = problem.column != null ? `line ${problem.line}, column ${problem.column}` : `line ${problem.line}`;
  return `${where}: ${problem.message}`;
}
