import { defineConfig } from 'vitest/config';

export default defineConfig({
  // One copy of graphql: its ESM and CJS builds would otherwise both load ("another module or realm").
  resolve: { alias: { graphql: 'graphql/index.js' } },
  test: {
    include: ['tests/**/*.test.ts'],
    // Builds dist/ once: process-level tests run the server as `npm start` does.
    globalSetup: ['tests/global-setup.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // Each file gets its own database (PGlite in memory, or a fresh PostgreSQL database).
    fileParallelism: true,
    maxWorkers: 2,
    // Test files share a worker's loaded modules (each file still builds its own app, database and deps;
    // services keep no module-level state): importing the app again for each of 37 files cost ~75 s of CPU.
    isolate: false,
  },
});
