import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const GRAFANA = fileURLToPath(new URL('../grafana/', import.meta.url));

/** Runs Debian's `promtool` (from PATH) in grafana/, bounded, and returns its exit code and output. */
function promtool(...args: string[]): { status: number | null; output: string } {
  const result = spawnSync('promtool', args, { cwd: GRAFANA, encoding: 'utf8', timeout: 60_000 });
  expect(result.error).toBeUndefined();
  return { status: result.status, output: `${result.stdout}${result.stderr}` };
}

/** The alert names of grafana/alerts.yml, in order. */
function alertNames(): string[] {
  const text = readFileSync(`${GRAFANA}alerts.yml`, 'utf8');
  return [...text.matchAll(/^\s+- alert: (\w+)$/gm)].map((m) => m[1] as string);
}

describe('alert rules (grafana/alerts.yml)', () => {
  it('pass promtool check rules, each with a for, a severity, a summary and a description', () => {
    const { status, output } = promtool('check', 'rules', 'alerts.yml');
    expect(status, output).toBe(0);
    expect(output).toContain(`SUCCESS: ${alertNames().length} rules found`);
    const rules = readFileSync(`${GRAFANA}alerts.yml`, 'utf8')
      .split(/^\s+- alert: /m)
      .slice(1);
    for (const rule of rules) {
      const name = rule.slice(0, rule.indexOf('\n'));
      expect(rule, name).toMatch(/^\s+for: \d+[smh]$/m);
      expect(rule, name).toMatch(/^\s+severity: (critical|warning)$/m);
      expect(rule, name).toMatch(/^\s+summary: /m);
      expect(rule, name).toMatch(/^\s+description: /m);
    }
  });

  it('pass their unit tests (promtool test rules), a firing and a quiet case for every alert', () => {
    const { status, output } = promtool('test', 'rules', 'alerts.test.yml');
    expect(status, output).toBe(0);
    expect(output).toMatch(/^\s*SUCCESS\s*$/m);
    expect(output).not.toMatch(/FAILED/);
    // Every alert is tested both ways: an expected alert, and an evaluation that expects none.
    const tests = readFileSync(`${GRAFANA}alerts.test.yml`, 'utf8');
    for (const name of alertNames()) {
      const cases = [...tests.matchAll(new RegExp(`alertname: ${name}\\n\\s+exp_alerts:(.*)`, 'g'))];
      expect(
        cases.some((m) => m[1]?.trim() === ''),
        `${name} fires`,
      ).toBe(true);
      expect(
        cases.some((m) => m[1]?.trim() === '[]'),
        `${name} stays quiet`,
      ).toBe(true);
    }
  });

  it('are loaded by the example Prometheus config (promtool check config)', () => {
    const { status, output } = promtool('check', 'config', 'prometheus.yml');
    expect(status, output).toBe(0);
    expect(output).toContain('SUCCESS: 1 rule files found');
    expect(output).toContain(`SUCCESS: ${alertNames().length} rules found`);
  });
});
