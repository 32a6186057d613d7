// Rhai for CodeMirror: a small stream tokenizer (no grammar build step) and
// completions for `ctx` (SCRIPTING.md) and every SDK namespace the server reports at
// GET /api/v1/sdk, so completions never drift from what scripts can call.
import { StreamLanguage, type StreamParser, type StringStream } from "@codemirror/language";
import type { Completion, CompletionContext, CompletionResult } from "@codemirror/autocomplete";
import type { Sdk } from "../api/client";

const KEYWORDS = new Set([
  "let", "const", "if", "else", "switch", "while", "loop", "for", "in", "do", "until",
  "break", "continue", "return", "throw", "try", "catch", "fn", "private", "import",
  "export", "as", "global", "this", "is_def_var", "type_of", "print", "debug",
]);
const ATOMS = new Set(["true", "false"]);

interface State {
  inBlockComment: number;
  inString: false | '"' | "`";
}

/** The rest of a string (backtick strings may span lines). */
function stringBody(stream: StringStream, state: State): string {
  const quote = state.inString;
  let escaped = false;
  while (!stream.eol()) {
    const ch = stream.next();
    if (ch === quote && !escaped) {
      state.inString = false;
      break;
    }
    escaped = quote === '"' && !escaped && ch === "\\";
  }
  return "string";
}

const parser: StreamParser<State> = {
  name: "rhai",
  startState: () => ({ inBlockComment: 0, inString: false }),
  token(stream, state) {
    if (state.inBlockComment > 0) {
      while (!stream.eol()) {
        if (stream.match("*/")) {
          state.inBlockComment--;
          if (state.inBlockComment === 0) break;
        } else if (stream.match("/*")) state.inBlockComment++;
        else stream.next();
      }
      return "comment";
    }
    if (state.inString) return stringBody(stream, state);
    if (stream.eatSpace()) return null;
    if (stream.match("//")) {
      stream.skipToEnd();
      return "comment";
    }
    if (stream.match("/*")) {
      state.inBlockComment = 1;
      return "comment";
    }
    const ch = stream.peek();
    if (ch === '"' || ch === "`") {
      stream.next();
      state.inString = ch;
      return stringBody(stream, state);
    }
    if (ch === "'") {
      stream.match(/^'(\\.|[^'\\])'/) || stream.next();
      return "string";
    }
    if (stream.match(/^0x[0-9a-fA-F_]+/) || stream.match(/^\d[\d_]*(\.\d[\d_]*)?([eE][+-]?\d+)?/)) return "number";
    if (stream.match("#{")) return "bracket";
    if (stream.match(/^[A-Za-z_][\w]*/)) {
      const word = stream.current();
      if (KEYWORDS.has(word)) return "keyword";
      if (ATOMS.has(word)) return "atom";
      if (word === "ctx") return "variableName.special";
      if (stream.match("::", false)) return "namespace";
      if (stream.match(/^\s*\(/, false)) return "variableName.function";
      return "variableName";
    }
    if (stream.match("::")) return "punctuation";
    if (stream.match(/^[+\-*/%=<>!&|^?.]+/)) return "operator";
    stream.next();
    return null;
  },
  languageData: {
    commentTokens: { line: "//", block: { open: "/*", close: "*/" } },
    closeBrackets: { brackets: ["(", "[", "{", '"', "`"] },
  },
};

export const rhaiLanguage = StreamLanguage.define(parser);

/** What `ctx` holds (SCRIPTING.md "ctx"), field by field. */
export const CTX_FIELDS: Record<string, { detail: string; fields?: string[] }> = {
  ctx: { detail: "the run's context", fields: ["app", "script", "principal", "request", "event", "execution"] },
  "ctx.app": { detail: "#{ id, slug }", fields: ["id", "slug"] },
  "ctx.script": { detail: "#{ id, name }", fields: ["id", "name"] },
  "ctx.principal": { detail: "() when anonymous", fields: ["kind", "id", "key_id", "scopes"] },
  "ctx.request": { detail: "route runs only", fields: ["method", "path", "params", "query", "headers", "body", "body_raw"] },
  "ctx.event": {
    detail: "trigger runs and async routes",
    fields: ["id", "source", "op", "attempt", "kv", "docs", "files", "pubsub", "cron", "dead_letter", "email"],
  },
  "ctx.execution": { detail: "#{ id, attempt }", fields: ["id", "attempt"] },
  "ctx.event.kv": { detail: "kv trigger", fields: ["collection", "key", "value", "prev"] },
  "ctx.event.docs": { detail: "docs trigger", fields: ["collection", "id", "data", "prev_data"] },
  "ctx.event.dead_letter": {
    detail: "dead-letter trigger",
    fields: ["id", "trigger_id", "script_id", "source_kind", "event", "error", "attempts"],
  },
};

/** Completions after `ctx.` (and deeper): the fields of the object before the dot. */
export function ctxCompletions(chain: string): Completion[] {
  const entry = CTX_FIELDS[chain];
  if (!entry?.fields) return [];
  return entry.fields.map((f) => ({
    label: f,
    type: "property",
    detail: CTX_FIELDS[`${chain}.${f}`]?.detail,
  }));
}

/** Completions after `ns::`: every function of that namespace, overloads merged. */
export function namespaceCompletions(sdk: Sdk, ns: string): Completion[] {
  const space = sdk.namespaces.find((n) => n.name === ns);
  if (!space) return [];
  const byName = new Map<string, Completion>();
  for (const f of space.functions) {
    const signature = `${f.name}(${f.params.join(", ")}) -> ${f.returns}`;
    const seen = byName.get(f.name);
    if (seen) {
      seen.info = `${seen.info}\n${signature}`;
      continue;
    }
    byName.set(f.name, {
      label: f.name,
      type: "function",
      detail: `(${f.params.map((p) => p.split(":")[0].trim()).join(", ")})`,
      info: f.doc ? `${signature}\n\n${f.doc}` : signature,
      apply: `${f.name}(`,
    });
  }
  return [...byName.values()];
}

/** Completions for a bare word: `ctx`, the namespaces (as `ns::`) and keywords. */
export function wordCompletions(sdk: Sdk | null): Completion[] {
  const out: Completion[] = [{ label: "ctx", type: "variable", detail: "the run's context" }];
  for (const n of sdk?.namespaces ?? []) {
    if (n.name.includes("::")) continue;
    out.push({ label: `${n.name}::`, type: "namespace", detail: `${n.functions.length} functions` });
  }
  for (const k of KEYWORDS) out.push({ label: k, type: "keyword" });
  return out;
}

/** The CodeMirror completion source; `getSdk` is read at each request (it loads once). */
export function rhaiCompletions(getSdk: () => Sdk | null) {
  return (context: CompletionContext): CompletionResult | null => {
    const ctxChain = context.matchBefore(/ctx(\.\w+)*\.\w*$/);
    if (ctxChain) {
      const dot = ctxChain.text.lastIndexOf(".");
      const options = ctxCompletions(ctxChain.text.slice(0, dot));
      return options.length ? { from: ctxChain.from + dot + 1, options, validFor: /^\w*$/ } : null;
    }
    const sdk = getSdk();
    const nsCall = context.matchBefore(/[A-Za-z_]\w*(::[A-Za-z_]\w*)*::\w*$/);
    if (nsCall && sdk) {
      const sep = nsCall.text.lastIndexOf("::");
      const ns = nsCall.text.slice(0, sep);
      const options = namespaceCompletions(sdk, ns);
      return options.length ? { from: nsCall.from + sep + 2, options, validFor: /^\w*$/ } : null;
    }
    const word = context.matchBefore(/[A-Za-z_]\w*$/);
    if (!word && !context.explicit) return null;
    return { from: word ? word.from : context.pos, options: wordCompletions(sdk), validFor: /^\w*$/ };
  };
}
