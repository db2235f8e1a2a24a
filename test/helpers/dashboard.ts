import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** Path of the Grafana dashboard shipped in `grafana/`. */
export const DASHBOARD_PATH = fileURLToPath(new URL('../../grafana/dashboards/blockcast.json', import.meta.url));

/** A dashboard panel target, as far as the tests read it. */
export interface DashboardTarget {
  readonly refId: string;
  readonly expr: string;
  readonly legendFormat?: string;
  readonly datasource?: { readonly type?: string; readonly uid?: string };
}

/** A dashboard panel (a row or a visualization), as far as the tests read it. */
export interface DashboardPanel {
  readonly id: number;
  readonly type: string;
  readonly title: string;
  readonly description?: string;
  readonly gridPos: { readonly x: number; readonly y: number; readonly w: number; readonly h: number };
  readonly datasource?: { readonly type?: string; readonly uid?: string };
  readonly fieldConfig?: { readonly defaults: { readonly unit?: string } };
  readonly targets?: readonly DashboardTarget[];
  /** Panels of a collapsed row. */
  readonly panels?: readonly DashboardPanel[];
}

/** A template variable of the dashboard. */
export interface DashboardVariable {
  readonly name: string;
  readonly type: string;
  readonly query?: string;
  readonly allValue?: string;
}

/** The dashboard JSON, as far as the tests read it. */
export interface DashboardJson {
  readonly uid: string;
  readonly title: string;
  readonly panels: readonly DashboardPanel[];
  readonly templating: { readonly list: readonly DashboardVariable[] };
}

/** The dashboard's raw text. */
export function readDashboardText(): string {
  return readFileSync(DASHBOARD_PATH, 'utf8');
}

/** The dashboard, parsed. */
export function readDashboard(): DashboardJson {
  return JSON.parse(readDashboardText()) as DashboardJson;
}

/** Every panel in layout order: rows, their visualizations, and those inside collapsed rows. */
export function allPanels(dashboard: DashboardJson): DashboardPanel[] {
  return dashboard.panels.flatMap((panel) => [panel, ...(panel.panels ?? [])]);
}

/** The visualizations (every panel but rows). */
export function visualizations(dashboard: DashboardJson): DashboardPanel[] {
  return allPanels(dashboard).filter((panel) => panel.type !== 'row');
}

/** Every target of every visualization, with the title of its panel. */
export function panelQueries(dashboard: DashboardJson): Array<{ panel: string; refId: string; expr: string }> {
  return visualizations(dashboard).flatMap((panel) =>
    (panel.targets ?? []).map((target) => ({ panel: panel.title, refId: target.refId, expr: target.expr })),
  );
}

/**
 * What Grafana substitutes for the variables the panel queries use, when every template variable
 * is at "All" and the time range is the last `rangeSec` seconds. Throws on a variable it does not
 * know, so a new variable in the dashboard cannot go unchecked.
 */
export function expandVariables(dashboard: DashboardJson, expr: string, options: { rangeSec: number }): string {
  const values = new Map<string, string>([
    ['__rate_interval', `${Math.min(options.rangeSec, 60)}s`],
    ['__range', `${options.rangeSec}s`],
    ['__range_s', String(options.rangeSec)],
  ]);
  for (const variable of dashboard.templating.list) {
    if (variable.type === 'query') values.set(variable.name, variable.allValue ?? '.*');
  }
  return expr.replace(/\$\{(\w+)\}|\$(\w+)/g, (whole, braced: string | undefined, bare: string | undefined) => {
    const name = braced ?? bare ?? '';
    const value = values.get(name);
    if (value === undefined) throw new Error(`unknown variable ${whole} in ${expr}`);
    return value;
  });
}
