// Builds the inbox page (src/web/) with Vite into dist/web/, which the gateway serves at / and /inbox/...
// (src/http/web.ts). Separate from scripts/build.mjs: the server is per-module esbuild output for Node,
// the page one hashed browser bundle.
import { fileURLToPath } from 'node:url';
import { build } from 'vite';

await build({
  configFile: fileURLToPath(new URL('../src/web/vite.config.ts', import.meta.url)),
  logLevel: process.argv.includes('--verbose') ? 'info' : 'warn',
});
