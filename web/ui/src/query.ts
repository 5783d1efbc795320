// Query bar helpers: the word being typed, field-name completion, error positions.

/** The field-name prefix being typed at `caret` (letters, digits, `_`, `.`, `@`), with where it
 * starts; null when the caret is in a value (after `field:`), a quoted phrase or whitespace. */
export function wordAt(text: string, caret: number): { start: number; word: string } | null {
  let quotes = 0;
  for (let i = 0; i < caret; i++) if (text[i] === '"' && text[i - 1] !== '\\') quotes++;
  if (quotes % 2 === 1) return null;
  let start = caret;
  while (start > 0 && /[\w.@*-]/.test(text[start - 1])) start--;
  const word = text.slice(start, caret);
  if (!word || /^(AND|OR|NOT)$/.test(word)) return null;
  if (start > 0 && text[start - 1] === ':') return null;
  return { start, word };
}

/** Field names starting with the word at the caret (case-insensitive), best first. */
export function completions(text: string, caret: number, fields: string[], max = 8): string[] {
  const at = wordAt(text, caret);
  if (!at) return [];
  const prefix = at.word.toLowerCase();
  return fields
    .filter((f) => f.toLowerCase().startsWith(prefix) && f.toLowerCase() !== prefix)
    .sort((a, b) => a.length - b.length || a.localeCompare(b))
    .slice(0, max);
}

/** The text with the word at the caret replaced by `field:`, and the caret after it. */
export function applyCompletion(text: string, caret: number, field: string): { text: string; caret: number } {
  const at = wordAt(text, caret) ?? { start: caret, word: '' };
  const inserted = `${field}:`;
  return {
    text: text.slice(0, at.start) + inserted + text.slice(caret),
    caret: at.start + inserted.length,
  };
}

/** Names to complete: the built-in fields plus those the API saw (`/api/v1/fields`). */
export const BUILTIN_FIELDS = ['service', 'host', 'level', 'message', 'template', 'trace_id', 'span_id', 'source', 'format'];

export function fieldNames(seen: string[]): string[] {
  return Array.from(new Set([...BUILTIN_FIELDS, ...seen]));
}

/** Split a query around a syntax error position, for showing a marker under it. */
export function splitAtError(text: string, position: number): [string, string, string] {
  const at = Math.max(0, Math.min(position, text.length));
  return [text.slice(0, at), text.slice(at, at + 1) || ' ', text.slice(at + 1)];
}
