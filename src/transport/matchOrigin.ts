/**
 * An origin allowed to open sockets: `*` (any), an exact origin (`https://wallet.example`,
 * `http://localhost:3000`), or every subdomain of one (`https://*.wallet.example`).
 */
export interface OriginPattern {
  readonly text: string;
  /** `scheme://` and `host[:port]` for an exact origin; for a subdomain pattern, the host's suffix (`.wallet.example[:port]`). */
  readonly scheme: string;
  readonly host: string;
  readonly anySubdomain: boolean;
  readonly any: boolean;
}

const HOST = /^(\*\.)?[a-z0-9-]+(\.[a-z0-9-]+)*(:\d{1,5})?$|^\[[0-9a-f:.]+\](:\d{1,5})?$/;

/** Parses one allowed origin; `undefined` when it is not one of the forms of {@link OriginPattern}. */
export function parseOriginPattern(raw: string): OriginPattern | undefined {
  const text = raw.trim().toLowerCase();
  if (text === '*') return { text, scheme: '', host: '', anySubdomain: false, any: true };
  const m = /^(https?):\/\/([^/?#]+)$/.exec(text);
  if (m === null) return undefined;
  const host = m[2] as string;
  if (!HOST.test(host)) return undefined;
  const anySubdomain = host.startsWith('*.');
  return { text, scheme: m[1] as string, host: anySubdomain ? host.slice(1) : host, anySubdomain, any: false };
}

/**
 * Whether a request's `Origin` header is allowed by `patterns`. An empty list allows any; a
 * request without the header (a program, not a web page) is allowed: origins restrict web pages,
 * which cannot forge it.
 */
export function originAllowed(origin: string, patterns: readonly OriginPattern[]): boolean {
  if (patterns.length === 0 || origin === '' || patterns.some((p) => p.any)) return true;
  const m = /^(https?):\/\/([^/?#]+)$/.exec(origin.toLowerCase());
  if (m === null) return false; // `null` (a sandboxed page, a file) and anything else
  const scheme = m[1] as string;
  const host = m[2] as string;
  return patterns.some(
    (p) =>
      p.scheme === scheme && (p.anySubdomain ? host.endsWith(p.host) && host.length > p.host.length : host === p.host),
  );
}
