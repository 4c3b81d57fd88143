import { readFileSync } from 'node:fs';

// Reads a V8 .cpuprofile and says where the time went: self time by package (node_modules/<name>, our
// src/<folder>, node internals, GC) and by function.

type Node = { id: number; callFrame: { functionName: string; url: string; lineNumber: number }; children?: number[] };

/** Stages of a request, by a function that runs it: inclusive time is any sample with it on the stack. */
const STAGES: [string, RegExp][] = [
  ['HTTP request handling (whole)', /^(handleNodeRequest|handleNodeRequestAndResponse|requestListener)$/],
  ['GraphQL parse', /^parse$/],
  ['GraphQL validate', /^validate$/],
  ['cost limit (graphql-query-complexity)', /^getComplexity$/],
  ['GraphQL execute', /^(execute|normalizedExecutor|executeImpl)$/],
  ['Drizzle result mapping', /^mapResultRow$/],
  ['Drizzle query building', /^(buildQueryFromSourceParams|toQuery|_prepare|prepareQuery)$/],
  ['postgres.js protocol', /^(handle|DataRow|RowDescription|ReadyForQuery|execute)$/],
  ['JSON serialization', /^(jsonStringifyResultWithoutInternals|stringify)$/],
];

export function summarizeProfile(file: string, top = 25): string {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as { nodes: Node[]; samples: number[] };
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const hits = new Map<number, number>();
  for (const id of profile.samples) hits.set(id, (hits.get(id) ?? 0) + 1);
  const busy = profile.samples.filter((id) => byId.get(id)!.callFrame.functionName !== '(idle)').length;
  const byPackage = new Map<string, number>();
  const byFunction = new Map<string, number>();
  const add = (map: Map<string, number>, key: string, n: number) => map.set(key, (map.get(key) ?? 0) + n);
  for (const [id, n] of hits) {
    const { functionName, url, lineNumber } = byId.get(id)!.callFrame;
    if (functionName === '(idle)') continue;
    const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url)?.[1];
    const group =
      functionName === '(garbage collector)' ? '(gc)'
      : pkg ? pkg
      : url.includes('/src/') ? `src/${url.split('/src/')[1]!.split('/')[0]}`
      : url.includes('/dist/') ? `src/${url.split('/dist/')[1]!.split('/')[0]}`
      : url.includes('/bench/') ? 'bench'
      : url.startsWith('node:') ? 'node internals'
      : '(native)';
    add(byPackage, group, n);
    add(byFunction, `${functionName || '(anonymous)'} ${url.replace(/^.*node_modules\//, '').replace(/^.*\/(src|bench|dist)\//, '$1/')}:${lineNumber + 1}`, n);
  }
  // Inclusive time per stage: walk from each sampled node up through its parents.
  const parent = new Map<number, number>();
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id);
  const stageHits = new Map<string, number>();
  for (const [id, n] of hits) {
    if (byId.get(id)!.callFrame.functionName === '(idle)') continue;
    const seen = new Set<string>();
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const name = byId.get(at)!.callFrame.functionName;
      for (const [stage, pattern] of STAGES) if (!seen.has(stage) && pattern.test(name)) seen.add(stage);
    }
    for (const stage of seen) add(stageHits, stage, n);
  }
  const list = (map: Map<string, number>) =>
    [...map].sort((a, b) => b[1] - a[1]).slice(0, top).map(([name, n]) => `${((100 * n) / busy).toFixed(1).padStart(5)}%  ${name}`);
  const stages = STAGES.map(([stage]) => `${((100 * (stageHits.get(stage) ?? 0)) / busy).toFixed(1).padStart(5)}%  ${stage}`);
  return [
    'inclusive time by stage (share of busy samples; stages nest)',
    ...stages,
    '',
    'self time by package',
    ...list(byPackage),
    '',
    'self time by function',
    ...list(byFunction),
  ].join('\n');
}
