// Syntax colours from CSS variables, so the editor follows the light/dark setting
// along with the rest of the page (app.css defines --hl-*).
import { HighlightStyle, syntaxHighlighting } from "@codemirror/language";
import { tags as t } from "@lezer/highlight";

export const rhaiHighlighting = syntaxHighlighting(
  HighlightStyle.define([
    { tag: t.keyword, color: "var(--hl-keyword)" },
    { tag: [t.atom, t.bool], color: "var(--hl-atom)" },
    { tag: t.number, color: "var(--hl-number)" },
    { tag: t.string, color: "var(--hl-string)" },
    { tag: t.comment, color: "var(--hl-comment)", fontStyle: "italic" },
    { tag: t.namespace, color: "var(--hl-namespace)" },
    { tag: t.function(t.variableName), color: "var(--hl-function)" },
    { tag: t.special(t.variableName), color: "var(--hl-special)", fontWeight: "600" },
    { tag: t.operator, color: "var(--hl-operator)" },
  ]),
);
