import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';
import { createMetrics } from '../src/metrics/metrics.ts';
import {
  allPanels,
  type DashboardPanel,
  panelQueries,
  readDashboard,
  readDashboardText,
  visualizations,
} from './helpers/dashboard.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

/**
 * Type-checks TypeScript sources held in memory (as files in the repository root, so that
 * `@grafana/schema` resolves from node_modules) and returns the diagnostics of each.
 */
function typeCheck(files: Record<string, string>): Record<string, string[]> {
  const paths = new Map(Object.entries(files).map(([name, text]) => [`${ROOT}${name}`, text]));
  const options: ts.CompilerOptions = {
    strict: true,
    exactOptionalPropertyTypes: true,
    noEmit: true,
    skipLibCheck: true,
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    types: [],
  };
  const host = ts.createCompilerHost(options);
  const getSourceFile = host.getSourceFile.bind(host);
  const fileExists = host.fileExists.bind(host);
  const readFile = host.readFile.bind(host);
  host.getSourceFile = (name, language, onError) => {
    const text = paths.get(name);
    return text === undefined ? getSourceFile(name, language, onError) : ts.createSourceFile(name, text, language);
  };
  host.fileExists = (name) => paths.has(name) || fileExists(name);
  host.readFile = (name) => paths.get(name) ?? readFile(name);
  const program = ts.createProgram([...paths.keys()], options, host);
  const out: Record<string, string[]> = {};
  for (const [path] of paths) {
    const source = program.getSourceFile(path);
    if (source === undefined) throw new Error(`not in the program: ${path}`);
    out[path.slice(ROOT.length)] = [
      ...program.getSyntacticDiagnostics(source),
      ...program.getSemanticDiagnostics(source),
    ].map((d) => {
      const line = d.start === undefined ? 0 : source.getLineAndCharacterOfPosition(d.start).line + 1;
      return `line ${line}: ${ts.flattenDiagnosticMessageText(d.messageText, '\n')}`;
    });
  }
  return out;
}

// Grafana's schema is written in CUE, where enumerations are unions of string literals; the
// TypeScript that @grafana/schema generates from it declares them as enums, to which a JSON
// string is not assignable. `Json<T>` is the schema as JSON has it: each string enum becomes the
// union of its values; everything else is unchanged, excess-property checks included.
const PRELUDE = `
import type { Dashboard, DataQuery, FieldConfigSource, Panel, RowPanel } from '@grafana/schema';
import type { FieldConfig as HeatmapFieldConfig, Options as HeatmapOptions } from '@grafana/schema/dist/esm/raw/composable/heatmap/panelcfg/x/HeatmapPanelCfg_types.gen';
import type { Options as StatOptions } from '@grafana/schema/dist/esm/raw/composable/stat/panelcfg/x/StatPanelCfg_types.gen';
import type { FieldConfig as TimeSeriesFieldConfig, Options as TimeSeriesOptions } from '@grafana/schema/dist/esm/raw/composable/timeseries/panelcfg/x/TimeSeriesPanelCfg_types.gen';

type Json<T> = T extends string ? \`\${T}\`
  : T extends number | boolean | null | undefined ? T
  : T extends ReadonlyArray<infer U> ? Array<Json<U>>
  : T extends object ? { [K in keyof T]: Json<T[K]> }
  : T;

/** The Prometheus data source's query (Grafana's prometheus dataquery schema). */
interface PrometheusQuery extends DataQuery {
  expr: string;
  legendFormat?: string;
  format?: 'time_series' | 'table' | 'heatmap';
  instant?: boolean;
  range?: boolean;
  exemplar?: boolean;
  editorMode?: 'code' | 'builder';
  interval?: string;
  intervalFactor?: number;
}

type PanelOf<Options, Custom> = Json<
  Omit<Panel, 'options' | 'fieldConfig' | 'targets'> & {
    options: Options;
    fieldConfig: FieldConfigSource<Custom>;
    targets: PrometheusQuery[];
  }
>;
type Row = Json<RowPanel>;
`;

/** The schema type of each panel type the dashboard uses. */
const PANEL_TYPES: Record<string, string> = {
  timeseries: 'PanelOf<TimeSeriesOptions, TimeSeriesFieldConfig>',
  stat: 'PanelOf<StatOptions, Record<string, never>>',
  heatmap: 'PanelOf<HeatmapOptions, HeatmapFieldConfig>',
  row: 'Row',
};

/** A TypeScript module that assigns the dashboard and each of its panels to their schema types. */
function checkSource(dashboardText: string): string {
  const dashboard = JSON.parse(dashboardText) as { panels: DashboardPanel[] };
  const panels = dashboard.panels.flatMap((panel) => [panel, ...(panel.panels ?? [])]);
  const declarations = panels.map((panel, i) => {
    const type = PANEL_TYPES[panel.type];
    if (type === undefined) throw new Error(`panel ${JSON.stringify(panel.title)}: no schema for type ${panel.type}`);
    return `export const panel${i}: ${type} = ${JSON.stringify(panel, null, 2)};`;
  });
  return [PRELUDE, `export const dashboard: Json<Dashboard> = ${dashboardText};`, ...declarations].join('\n');
}

/** How every panel and target names its data source: Grafana's data source variable. */
const DATASOURCE = { type: 'prometheus', uid: `\${datasource}` };

const ROW_TITLES = [
  'Traffic',
  'Fan-out latency',
  'Ingest health',
  'Errors and limits',
  'Process',
  'Chain log',
  'Wallet features',
];

describe('Grafana dashboard (grafana/dashboards/blockcast.json)', () => {
  it("matches Grafana's published dashboard schema (@grafana/schema), panel options included", () => {
    const text = readDashboardText();
    const dashboard = JSON.parse(text) as { panels: Array<Record<string, unknown>> };
    // Two broken copies prove the check bites: a misspelled key and a value outside an enum.
    const misspelled = JSON.stringify({ ...dashboard, titel: 'blockcast' });
    const badEnum = text.replace('"displayMode": "table"', '"displayMode": "tables"');
    expect(badEnum).not.toBe(text);
    const diagnostics = typeCheck({
      'dashboard.check.ts': checkSource(text),
      'misspelled.check.ts': checkSource(misspelled),
      'bad-enum.check.ts': checkSource(badEnum),
    });
    expect(diagnostics['dashboard.check.ts']).toEqual([]);
    expect(diagnostics['misspelled.check.ts']?.join('\n')).toMatch(/'"?titel"?' does not exist/);
    expect(diagnostics['bad-enum.check.ts']?.join('\n')).toMatch(/"tables"/);
  });

  it('has the rows traffic, fan-out latency, ingest health, errors and limits, process, chain log, wallet features, each with panels', () => {
    const dashboard = readDashboard();
    const rows = dashboard.panels.filter((panel) => panel.type === 'row');
    expect(rows.map((row) => row.title)).toEqual(ROW_TITLES);
    // Every row has visualizations under it (until the next row, or inside it when collapsed).
    const counts = new Map<string, number>();
    let row = '';
    for (const panel of allPanels(dashboard)) {
      if (panel.type === 'row') row = panel.title;
      else counts.set(row, (counts.get(row) ?? 0) + 1);
    }
    for (const title of ROW_TITLES) expect(counts.get(title), title).toBeGreaterThan(0);
  });

  it('lays panels out on the 24-column grid without overlaps, with unique ids', () => {
    const dashboard = readDashboard();
    const panels = allPanels(dashboard);
    expect(new Set(panels.map((p) => p.id)).size).toBe(panels.length);
    for (const { title, gridPos: g } of panels) {
      expect(g.x >= 0 && g.w > 0 && g.x + g.w <= 24 && g.y >= 0 && g.h > 0, title).toBe(true);
    }
    for (const [i, a] of panels.entries()) {
      for (const b of panels.slice(i + 1)) {
        const overlap =
          a.gridPos.x < b.gridPos.x + b.gridPos.w &&
          b.gridPos.x < a.gridPos.x + a.gridPos.w &&
          a.gridPos.y < b.gridPos.y + b.gridPos.h &&
          b.gridPos.y < a.gridPos.y + a.gridPos.h;
        expect(overlap, `${a.title} overlaps ${b.title}`).toBe(false);
      }
    }
  });

  it('queries the data source variable from every panel, with a description, unit and distinct refIds', () => {
    const dashboard = readDashboard();
    const variables = dashboard.templating.list;
    expect(variables.find((v) => v.name === 'datasource')).toMatchObject({ type: 'datasource', query: 'prometheus' });
    for (const panel of visualizations(dashboard)) {
      expect(panel.datasource, panel.title).toEqual(DATASOURCE);
      expect(panel.description, panel.title).toBeTruthy();
      if (panel.type !== 'heatmap') expect(panel.fieldConfig?.defaults.unit, panel.title).toBeTruthy();
      const targets = panel.targets ?? [];
      expect(targets.length, panel.title).toBeGreaterThan(0);
      expect(new Set(targets.map((t) => t.refId)).size, panel.title).toBe(targets.length);
      for (const target of targets) {
        expect(target.datasource, panel.title).toEqual(DATASOURCE);
        expect(target.expr.trim(), panel.title).not.toBe('');
      }
    }
  });

  it('covers every blockcast metric of the registry and names no metric the gateway lacks', async () => {
    const metrics = createMetrics();
    const registered = new Map(
      (await metrics.registry.getMetricsAsJSON()).map((m) => [m.name, String(m.type)] as const),
    );
    const dashboard = readDashboard();
    const texts = [
      ...panelQueries(dashboard).map((q) => q.expr),
      ...dashboard.templating.list.map((v) => v.query ?? ''),
    ];
    const used = new Set(texts.flatMap((text) => text.match(/\b(?:blockcast|process|nodejs)_[a-z0-9_]+/g) ?? []));
    const known = (name: string): boolean => {
      if (registered.has(name)) return true;
      const base = name.replace(/_(bucket|sum|count)$/, '');
      return base !== name && ['histogram', 'summary'].includes(registered.get(base) ?? '');
    };
    expect([...used].filter((name) => !known(name))).toEqual([]);
    const usedBases = new Set(
      [...used].map((name) => (known(name) && !registered.has(name) ? name.replace(/_(bucket|sum|count)$/, '') : name)),
    );
    const missing = [...registered.keys()].filter((name) => name.startsWith('blockcast_') && !usedBases.has(name));
    expect(missing, 'metrics without a panel').toEqual([]);
  });

  it('ships provisioning for the data source and the dashboard, pointing at each other', () => {
    const read = (path: string): string => readFileSync(new URL(`../grafana/${path}`, import.meta.url), 'utf8');
    const datasource = read('provisioning/datasources/prometheus.yml');
    expect(datasource).toMatch(/^\s+type: prometheus$/m);
    expect(datasource).toMatch(/^\s+timeInterval: \d+s$/m);
    const provider = read('provisioning/dashboards/blockcast.yml');
    expect(provider).toMatch(/^\s+type: file$/m);
    const path = /^\s+path: (\S+)$/m.exec(provider)?.[1];
    const compose = read('docker-compose.yml');
    // The compose file mounts the dashboards folder where the provider reads it.
    expect(compose).toContain(`./dashboards:${path}`);
    expect(compose).toContain('./provisioning:/etc/grafana/provisioning');
  });
});
