// Compiles src/ to dist/ (one JavaScript file per module, same tree), which is what `npm start` runs.
// Running the TypeScript through tsx's loader cost the server ~15% more CPU per request and ~160 MB more
// RSS (its loader thread, and a __name() call for every closure made: bench/optimizations.md). No
// bundling, so paths resolved from import.meta.url (the drizzle/ folder) stay the same depth. esbuild
// does not type-check: `npm run typecheck` does.
import { existsSync, readdirSync, rmSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildSync } from 'esbuild';

const root = fileURLToPath(new URL('..', import.meta.url));
const sourceDir = join(root, 'src');
const outDir = join(root, 'dist');

const sources = readdirSync(sourceDir, { recursive: true, encoding: 'utf8' })
  // src/web/ is the inbox page: a browser bundle Vite builds (scripts/build-web.mjs), not server modules.
  .filter((file) => file.endsWith('.ts') && !file.endsWith('.d.ts') && !file.startsWith(`web${'/'}`))
  .map((file) => join(sourceDir, file));

// A module deleted from src/ must not linger in dist/. dist/web/ (the page's own build) stays.
if (existsSync(outDir)) {
  for (const entry of readdirSync(outDir)) if (entry !== 'web') rmSync(join(outDir, entry), { recursive: true, force: true });
}
buildSync({
  entryPoints: sources,
  outdir: outDir,
  outbase: sourceDir,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  // Stack traces point at src/ when Node runs with --enable-source-maps (npm start does).
  sourcemap: 'linked',
  sourcesContent: false,
  logLevel: 'warning',
});
if (process.argv.includes('--verbose')) console.log(`built ${sources.length} modules into ${relative(root, outDir)}/`);
