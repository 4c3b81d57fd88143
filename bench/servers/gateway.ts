// The gateway as `npm start` runs it (config from the environment, migrations, buildApp), plus an IPC
// channel through which the benchmark runner reads the statement log's counter.
// Run: node --import tsx bench/servers/gateway.ts
import { buildApp } from '../../src/app.js';
import { loadConfig } from '../../src/config.js';
import { openDeps } from '../../src/deps.js';
import { createLogger } from '../../src/logger.js';
import { reportStats } from './stats.mjs';

const config = loadConfig();
const deps = await openDeps(config, createLogger(config));
const app = buildApp(deps);
reportStats(app.server, () => ({ statements: deps.database.statementLog.count }));
const url = await app.start(config.port, config.host);
console.log(`gateway listening on ${url}`);
process.on('SIGTERM', () => {
  void app.stop(1000).then(() => deps.close()).then(() => process.exit(0));
});
