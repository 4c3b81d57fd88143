// PostGraphile 5 (library mode, amber preset) on the benchmark database: the off-the-shelf alternative.
// Run: node --require ./bench/servers/polyfill.cjs bench/servers/postgraphile.mjs
import { createServer } from 'node:http';
import pg from 'pg';
import { postgraphile } from 'postgraphile';
import { makePgService } from 'postgraphile/adaptors/pg';
import { grafserv } from 'postgraphile/grafserv/node';
import { PostGraphileAmberPreset } from 'postgraphile/presets/amber';
import { jsonPgSmartTags } from 'postgraphile/utils';
import { reportStats } from './stats.mjs';

const connectionString = process.env.DATABASE_URL;
const port = Number(process.env.PORT ?? 4102);
const poolSize = Number(process.env.DATABASE_POOL_SIZE ?? 10);
if (!connectionString) throw new Error('DATABASE_URL is required');

// Count statements the way the gateway's statement log does: every query sent to PostgreSQL.
// PRINT_SQL=N prints the first N of them (to see the SQL PostGraphile plans for a query).
let statements = 0;
const originalQuery = pg.Client.prototype.query;
let printed = 0;
pg.Client.prototype.query = function countedQuery(...args) {
  statements += 1;
  if (process.env.PRINT_SQL && printed++ < Number(process.env.PRINT_SQL)) console.log(args[0]?.text ?? args[0], args[0]?.values ?? '');
  return originalQuery.apply(this, args);
};

// Smart tags a PostGraphile user would add for these queries: conversations.last_message_id has no
// foreign key (the gateway keeps it by hand), (organization_id, phone_number) is a unique index rather
// than a constraint, and is_archived is unindexed (v5 only filters by indexed columns unless told).
const SmartTagsPlugin = jsonPgSmartTags({
  version: 1,
  config: {
    class: {
      conversations: {
        tags: {
          foreignKey: '(organization_id, last_message_id) references messages (organization_id, id)|@fieldName lastMessage',
          unique: 'organization_id,phone_number',
        },
        attribute: { is_archived: { tags: { behavior: '+filterBy' } } },
      },
    },
  },
});

const preset = {
  extends: [PostGraphileAmberPreset],
  plugins: [SmartTagsPlugin],
  pgServices: [makePgService({ connectionString, schemas: ['public'], poolConfig: { max: poolSize } })],
  grafserv: { port, graphiql: false, watch: false },
  grafast: { explain: false },
};

const pgl = postgraphile(preset);
const serv = pgl.createServ(grafserv);
const server = createServer();
server.keepAliveTimeout = 65_000;
reportStats(server, () => ({ statements }));
await serv.addTo(server);
if (process.env.PRINT_SCHEMA) {
  const { printSchema } = await import('postgraphile/graphql');
  console.log(printSchema(await pgl.getSchema()));
  process.exit(0);
}
server.listen(port, '127.0.0.1', () => console.log(`postgraphile listening on ${port}`));
