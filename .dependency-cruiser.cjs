/**
 * The floors of the house (docs/architecture.md): a file imports only from its own floor or below.
 *   1 cli → 2 api → 3 adapters → 4 pipeline → 5 hub → 6 mappings
 * Tests (`*.test.ts`, test/) and benchmarks (bench/) stand beside the house and may import anything.
 * Run by `npm test` (.ci/test) before the test suite, so CI fails on an upward import or a loop.
 */
const floors = ['cli', 'api', 'adapters', 'pipeline', 'hub', 'mappings'];
const notTests = '(?<!\\.test\\.ts)$';

/** One rule a floor: nothing in it may import from a floor above it. */
const floorRules = floors.slice(1).map((floor, i) => ({
  name: `floor-${floor}`,
  comment: `${floor}/ is floor ${i + 2}: it may import from ${floors.slice(i + 1).join(', ')} only; a call up is passed in as a function (like the intake's Enqueuer)`,
  severity: 'error',
  from: { path: `^${floor}/.*${notTests}` },
  to: { path: `^(${floors.slice(0, i + 1).join('|')})/` },
}));

module.exports = {
  forbidden: [
    ...floorRules,
    {
      name: 'no-circular',
      comment: 'an import loop (type-only imports count: they tie the files together just the same)',
      severity: 'error',
      from: { pathNot: '\\.test\\.ts$' },
      to: { circular: true },
    },
    {
      name: 'mappings-no-io',
      comment: 'mappings/ is pure code: no database, queue, network, HTTP or child processes (it reads only files it ships itself)',
      severity: 'error',
      from: { path: `^mappings/.*${notTests}` },
      to: { path: '^(node_modules/(pg|pg-.*|ioredis|bullmq|express|@electric-sql/pglite|prom-client|fhir-kit-client)/|(node:)?(net|http|https|http2|tls|dgram|child_process|worker_threads|cluster)$)' },
    },
    {
      name: 'not-to-test',
      comment: 'the product never imports test code',
      severity: 'error',
      from: { pathNot: '^(test|bench)/|\\.test\\.ts$' },
      to: { path: '^test/|\\.test\\.ts$' },
    },
    {
      name: 'not-to-unresolvable',
      comment: 'an import that resolves to nothing',
      severity: 'error',
      from: {},
      to: { couldNotResolve: true },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '^(dist|node_modules|test-results)/' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { exportsFields: ['exports'], conditionNames: ['import', 'require', 'node', 'default', 'types'] },
  },
};
