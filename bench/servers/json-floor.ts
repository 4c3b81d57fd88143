// The second floor: node:http + postgres.js where PostgreSQL writes the whole response. Each request is one
// prepared statement (json-floor-statements.ts) whose single text column is the body the gateway returns,
// byte for byte; node authenticates (the same contract as floor.ts), validates parameters and writes the
// bytes postgres.js hands over as a Buffer, without decoding them. It answers Q1, Q2/Q3 on floor.ts's paths
// and the REST messages route on the gateway's. `npm run bench` bundles it into bench/.build/json-floor.mjs.
import { createServer, type ServerResponse } from 'node:http';
import postgres from 'postgres';
import { decodeCursorWithScope } from '../../src/services/cursors.js';
import { parsePhone } from '../../src/services/phone.js';
import { floorAuthenticator } from './floor-auth.js';
import { inboxStatement, restMessagesStatement, threadStatement } from './json-floor-statements.js';
import { reportStats } from './stats.mjs';

const url = process.env.DATABASE_URL;
if (!url) throw new Error('DATABASE_URL is required');
const port = Number(process.env.PORT ?? 4103);
const sql = postgres(url, { max: Number(process.env.DATABASE_POOL_SIZE ?? 10), onnotice: () => {} });

let statements = 0;
const authenticate = floorAuthenticator(sql, () => {
  statements += 1;
});

/** The gateway's page-size limits: GraphQL's `first` at most 200, REST's `limit` capped at 200. */
const MAX_PAGE_SIZE = 200;

class BadRequest extends Error {}

/** Statement texts by shape, built once each (a page size is part of the text). */
const texts = new Map<string, string>();
const textFor = (key: string, build: () => string) => texts.get(key) ?? texts.set(key, build()).get(key)!;

/** Runs a statement prepared once per connection; its row as raw column bytes (no text decoding). */
async function row(text: string, params: (string | Date)[]): Promise<(Buffer | null)[] | undefined> {
  statements += 1;
  const rows = await sql.unsafe(text, params as string[], { prepare: true }).raw();
  return rows[0] as (Buffer | null)[] | undefined;
}

const isTrue = (column: Buffer | null | undefined) => column?.length === 1 && column[0] === 0x74; // 't'

function pageSize(value: string | null, fallback: number, name: string, cap: boolean): number {
  if (value === null) return fallback;
  if (!/^\d+$/.test(value) || Number(value) < 1) throw new BadRequest(`${name} must be an integer of at least 1`);
  if (Number(value) > MAX_PAGE_SIZE && !cap) throw new BadRequest(`${name} must be at most ${MAX_PAGE_SIZE}`);
  return Math.min(Number(value), MAX_PAGE_SIZE);
}

/** A message cursor's key and the conversation it was issued for, as statement parameters $3, $4, $5. */
function cursorParams(cursor: string, argument: string): [Date, string, string] {
  try {
    const { scope, key } = decodeCursorWithScope('msg', cursor, argument);
    return [key.at, key.id, scope];
  } catch {
    throw new BadRequest(`${argument} is not a valid cursor for this list`);
  }
}

async function inbox(organizationId: string, query: URLSearchParams): Promise<Buffer> {
  const first = pageSize(query.get('first'), 20, 'first', false);
  const [body] = (await row(
    textFor(`q1:${first}`, () => inboxStatement(first)),
    [organizationId],
  ))!;
  return body!;
}

async function thread(organizationId: string, query: URLSearchParams): Promise<Buffer> {
  const phone = parsePhone(query.get('phoneNumber') ?? '');
  if (!phone) throw new BadRequest('invalid phone number');
  const first = pageSize(query.get('first'), 50, 'first', false);
  const after = query.get('after');
  const params = [organizationId, phone, ...(after ? cursorParams(after, 'after') : [])];
  const [body, cursorFits] = (await row(
    textFor(`q2:${first}:${Boolean(after)}`, () => threadStatement(first, Boolean(after))),
    params,
  ))!;
  if (after && !isTrue(cursorFits))
    return Buffer.from(JSON.stringify({ errors: [{ message: 'after is not a valid cursor for this list' }], data: null }));
  return body!;
}

async function restMessages(organizationId: string, segment: string, query: URLSearchParams): Promise<Buffer | null> {
  let phone: string | null = null;
  try {
    phone = parsePhone(decodeURIComponent(segment));
  } catch {
    /* malformed URL encoding: an invalid number */
  }
  if (!phone) throw new BadRequest('phoneNumber is not a valid phone number');
  const limit = pageSize(query.get('limit'), 50, 'limit', true);
  const cursor = query.get('cursor') || null;
  const params = [organizationId, phone, ...(cursor ? cursorParams(cursor, 'cursor') : [])];
  const found = await row(
    textFor(`rest:${limit}:${Boolean(cursor)}`, () => restMessagesStatement(limit, Boolean(cursor))),
    params,
  );
  if (!found) return null;
  if (cursor && !isTrue(found[1])) throw new BadRequest('cursor is not a valid cursor for this conversation');
  return found[0]!;
}

function send(res: ServerResponse, status: number, body: Buffer) {
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': body.length });
  res.end(body);
}

const error = (res: ServerResponse, status: number, message: string) =>
  send(res, status, Buffer.from(JSON.stringify({ errors: [{ message }] })));

const REST_MESSAGES = /^\/api\/conversations\/([^/]+)\/messages$/;

const server = createServer((req, res) => {
  void (async () => {
    const target = new URL(req.url ?? '/', 'http://floor');
    const organizationId = await authenticate(req);
    if (!organizationId) return error(res, 401, 'unauthenticated');
    if (target.pathname === '/q1') return send(res, 200, await inbox(organizationId, target.searchParams));
    if (target.pathname === '/q2') return send(res, 200, await thread(organizationId, target.searchParams));
    const rest = REST_MESSAGES.exec(target.pathname);
    if (rest) {
      const body = await restMessages(organizationId, rest[1]!, target.searchParams);
      return body ? send(res, 200, body) : error(res, 404, 'organization not found');
    }
    error(res, 404, 'not found');
  })().catch((failure) => {
    if (res.headersSent) return;
    if (failure instanceof BadRequest) return error(res, 400, failure.message);
    console.error(failure);
    error(res, 500, 'internal error');
  });
});
server.keepAliveTimeout = 65_000;
reportStats(server, () => ({ statements }));
server.listen(port, '127.0.0.1', () => console.log(`json floor listening on ${port}`));
