/**
 * A value a node sent, for a log line or an error message: a string as it is, on one line, at
 * most `maxChars` characters (then `…`); an array or object only by kind and length, so that a
 * huge value costs no more than a small one.
 */
export function excerpt(raw: unknown, maxChars = 70): string {
  if (Array.isArray(raw)) return `an array of ${raw.length}`;
  if (typeof raw === 'object' && raw !== null) return 'an object';
  if (typeof raw !== 'string') return String(raw);
  const line = raw.slice(0, maxChars + 1).replace(/\p{Cc}+/gu, ' ');
  return line.length > maxChars ? `${line.slice(0, maxChars)}…` : line;
}
