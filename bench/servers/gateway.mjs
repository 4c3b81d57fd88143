// The gateway as `npm start` runs it (the build in dist/, config from the environment, migrations,
// buildApp), plus an IPC channel through which the benchmark runner reads the statement log's counter.
// Run: npm run build && node bench/servers/gateway.mjs
import { buildApp } from '../../dist/app.js';
import { loadConfig } from '../../dist/config.js';
import { openDeps } from '../../dist/deps.js';
import { createLogger } from '../../dist/logger.js';
import { reportStats } from './stats.mjs';

const config = loadConfig();
const deps = await openDeps(config, createLogger(config));
const app = buildApp(deps);
reportStats(app.server, () => ({ statements: deps.database.statementLog.count }));
const url = await app.start(config.port, config.host);
deps.sendsInDoubt.start();
// As main.ts: outgoing webhooks (with no endpoint, one cheap claim per WEBHOOK_POLL_MS).
deps.webhooks.start();
console.log(`gateway listening on ${url}`);
process.on('SIGTERM', () => {
  void app.stop(1000).then(() => deps.close()).then(() => process.exit(0));
});
