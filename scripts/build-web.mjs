// Builds the inbox page (src/web/) with Vite into dist/web/, which the gateway serves at / and /inbox/...
// (src/http/web.ts). Separate from scripts/build.mjs: the server is per-module esbuild output for Node,
// the page one hashed browser bundle.
import { fileURLToPath } from 'node:url';
import { build } from 'vite';

// Always the production bundle: a NODE_ENV inherited from the caller (vitest sets `test`) would make Vite
// build React's development bundle, 60% larger.
process.env.NODE_ENV = 'production';
await build({
  mode: 'production',
  configFile: fileURLToPath(new URL('../src/web/vite.config.ts', import.meta.url)),
  logLevel: process.argv.includes('--verbose') ? 'info' : 'warn',
});
