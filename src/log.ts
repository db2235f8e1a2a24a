import pino from 'pino';

/** Levels of {@link Logger}, most verbose first. */
export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;

/** One level of {@link LOG_LEVELS}. */
export type LogLevel = (typeof LOG_LEVELS)[number];

/** What a line is about, besides its message: `chain`, `component`, `endpoint`, `err` (an error, with its cause). */
export type LogFields = Readonly<Record<string, unknown>>;

/** The gateway's logger: levels, structured fields, children that carry fields on every line. */
export interface Logger {
  debug(fields: LogFields, message: string): void;
  info(fields: LogFields, message: string): void;
  warn(fields: LogFields, message: string): void;
  error(fields: LogFields, message: string): void;
  child(fields: LogFields): Logger;
}

/** Options of {@link createLogger}. */
export interface LoggerOptions {
  readonly level: LogLevel;
  /** JSON lines (`level`, `time`, `msg` and the fields), or one readable line per entry for a terminal. */
  readonly format: 'json' | 'pretty';
  /** Where lines go. @default standard output, written synchronously (no line lost at exit) */
  readonly write?: (line: string) => void;
}

/** One JSON line as a terminal shows it: time, level, the fields that say what it is about, the message, the error. */
export function prettyLine(json: string): string {
  let entry: Record<string, unknown>;
  try {
    entry = JSON.parse(json) as Record<string, unknown>;
  } catch {
    return json;
  }
  const { time, level, msg, err, pid: _pid, hostname: _host, ...fields } = entry;
  const at = typeof time === 'string' ? time.slice(11, 23) : '';
  const about = Object.entries(fields)
    .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
    .join(' ');
  const error =
    typeof err === 'object' && err !== null
      ? `\n  ${String((err as { stack?: unknown }).stack ?? JSON.stringify(err))}`
      : '';
  return `${at} ${String(level ?? '')
    .toUpperCase()
    .padEnd(5)} ${about === '' ? '' : `[${about}] `}${String(msg ?? '')}${error}\n`;
}

/**
 * Builds the logger (pino): JSON lines with `level` (as a name), `time` (ISO 8601) and `msg`, or
 * readable lines on a terminal. Errors under `err` are written with their stack and cause.
 */
export function createLogger(options: LoggerOptions): Logger {
  const write = options.write;
  const destination =
    options.format === 'pretty'
      ? { write: (line: string) => (write ?? ((text: string) => process.stdout.write(text)))(prettyLine(line)) }
      : write !== undefined
        ? { write }
        : pino.destination({ dest: 1, sync: true });
  return pino(
    {
      level: options.level,
      base: null,
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      serializers: { err: pino.stdSerializers.errWithCause },
    },
    destination,
  );
}
