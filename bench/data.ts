import { parseArgs } from 'node:util';
import { benchDatabaseUrl, openSql, prepareDatabase } from './lib/database.js';
import { assertBenchDatabase, checkDataset, FULL_DATASET, loadDataset, QUICK_DATASET } from './lib/dataset.js';

// npm run bench:data [-- --quick] [--seed N] [--force]
// Loads the benchmark dataset into DATABASE_URL (emptying the gateway's tables there).

const { values } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    seed: { type: 'string' },
    force: { type: 'boolean', default: false },
  },
});

const url = benchDatabaseUrl();
const options = { ...(values.quick ? QUICK_DATASET : FULL_DATASET) };
if (values.seed !== undefined) options.seed = Number(values.seed);
if (!Number.isSafeInteger(options.seed)) throw new Error('--seed must be an integer');

await prepareDatabase(url);
const sql = openSql(url);
try {
  await assertBenchDatabase(sql, values.force);
  console.log(`Loading ${values.quick ? 'quick' : 'full'} dataset (seed ${options.seed}) into ${new URL(url).pathname.slice(1)}...`);
  const info = await loadDataset(sql, options, (line) => console.log(line));
  await checkDataset(sql, options);
  console.log(
    `Loaded ${info.messages.toLocaleString('en-US')} messages in ${info.conversations.toLocaleString('en-US')} conversations ` +
      `(${info.organizations} organizations) in ${info.loadSeconds}s; checks passed.`,
  );
  console.log(`  organization ${info.organizationId}, big conversation ${info.bigConversationPhone} (${info.bigConversation.toLocaleString('en-US')} messages)`);
  console.log(`  API token: ${info.apiToken}`);
  console.log(`  agent's user token: ${info.agentToken} (user ${info.agentUserId})`);
} finally {
  await sql.end();
}
