import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { buildSchema, isAbstractType } from 'graphql';
import { defineConfig } from 'vite';

// Graphcache's possibleTypes (which types an interface or union stands for), read from the committed
// schema.graphql at build time: fragments on `Error` and `TimelineItem` then match exactly.
const schema = buildSchema(readFileSync(fileURLToPath(new URL('../../schema.graphql', import.meta.url)), 'utf8'));
const possibleTypes: Record<string, string[]> = {};
for (const type of Object.values(schema.getTypeMap())) {
  if (isAbstractType(type) && !type.name.startsWith('__')) possibleTypes[type.name] = schema.getPossibleTypes(type).map((t) => t.name);
}

// The inbox page: built into dist/web/ (scripts/build-web.mjs), served by the gateway (src/http/web.ts).
export default defineConfig({
  root: fileURLToPath(new URL('.', import.meta.url)),
  base: '/',
  define: { __POSSIBLE_TYPES__: JSON.stringify(possibleTypes) },
  logLevel: 'warn',
  build: {
    outDir: fileURLToPath(new URL('../../dist/web', import.meta.url)),
    emptyOutDir: true,
    assetsDir: 'assets',
    // No inline scripts or styles: the page's CSP allows 'self' only.
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
    sourcemap: false,
    target: 'es2022',
  },
});
