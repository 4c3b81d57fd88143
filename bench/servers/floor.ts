// The floor: node:http + postgres.js answering Q1 (inbox), Q2/Q3 (a page of messages) and REST (the messages route) with
// hand-written SQL and JSON.stringify, producing byte-for-byte the JSON the gateway returns for the
// same GraphQL queries (same auth check, same ids and cursors). No framework, no GraphQL: the limit
// for Node on this machine. `npm run bench` bundles it with esbuild into bench/.build/floor.mjs and runs that.
import { createServer, type ServerResponse } from 'node:http';
import postgres from 'postgres';
// Only the pure helper functions, so the floor's work is the same cursor encoding the gateway does.
import { encodeCursor, decodeCursor } from '../../src/services/cursors.js';
import { parsePhone } from '../../src/services/phone.js';
import { floorAuthenticator } from './floor-auth.js';
import { reportStats } from './stats.mjs';

const url = process.env.DATABASE_URL;
if (!url) throw new Error('DATABASE_URL is required');
const port = Number(process.env.PORT ?? 4101);
const sql = postgres(url, { max: Number(process.env.DATABASE_POOL_SIZE ?? 10), onnotice: () => {} });

let statements = 0;

const globalId = (type: string, id: string) => Buffer.from(`${type}:${id}`).toString('base64');
const upper = (value: string | null) => (value === null ? null : value.toUpperCase());

const authenticate = floorAuthenticator(sql, () => {
  statements += 1;
});

type Row = Record<string, any>;

async function inbox(organizationId: string, first: number) {
  statements += 2;
  const list = await sql`
    select c.id, c.phone_number, c.unread_count, c.last_message_at, c.contact_id, ct.first_name, ct.last_name,
           c.last_message_id, m.direction as last_direction, m.body as last_body, m.created_at as last_created_at
    from conversations c
    left join contacts ct on ct.organization_id = c.organization_id and ct.id = c.contact_id
    left join messages m on m.organization_id = c.organization_id and m.id = c.last_message_id
    where c.organization_id = ${organizationId} and not c.is_archived
    order by c.last_message_at desc, c.id desc
    limit ${first + 1}`;
  const rows = list.slice(0, first);
  const pages = rows.length === 0 ? [] : await sql`
    select p.conversation_id, p.id, p.direction, p.body, p.status, p.created_at
    from unnest(${rows.map((r) => r.id)}::uuid[]) as c(id)
    cross join lateral (
      select conversation_id, id, direction, body, status, created_at from messages
      where organization_id = ${organizationId} and conversation_id = c.id
      order by created_at desc, id desc limit 5
    ) p`;
  const byConversation = new Map<string, Row[]>();
  for (const m of pages) {
    const list = byConversation.get(m.conversation_id);
    if (list) list.push(m);
    else byConversation.set(m.conversation_id, [m]);
  }
  const edges = rows.map((c) => ({
    cursor: encodeCursor('conv', organizationId, { at: c.last_message_at, id: c.id }),
    node: {
      id: globalId('Conversation', c.id),
      phoneNumber: c.phone_number,
      unreadCount: c.unread_count,
      lastMessageAt: c.last_message_at.toISOString(),
      contact: c.contact_id ? { id: globalId('Contact', c.contact_id), firstName: c.first_name, lastName: c.last_name } : null,
      lastMessage: c.last_message_id
        ? { id: globalId('Message', c.last_message_id), direction: upper(c.last_direction), body: c.last_body, createdAt: c.last_created_at.toISOString() }
        : null,
      messages: {
        edges: (byConversation.get(c.id) ?? []).map((m) => ({
          node: {
            id: globalId('Message', m.id),
            direction: upper(m.direction),
            body: m.body,
            status: m.direction === 'outgoing' ? upper(m.status) : null,
            createdAt: m.created_at.toISOString(),
          },
        })),
      },
    },
  }));
  return {
    data: {
      conversations: { edges, pageInfo: { hasNextPage: list.length > first, endCursor: edges.at(-1)?.cursor ?? null } },
    },
  };
}

// One statement: the conversation and its page through a LATERAL join.
async function thread(organizationId: string, phoneNumber: string, first: number, after: string | null) {
  statements += 1;
  let key: { at: Date; id: string } | null = null;
  let scope: string | null = null;
  if (after) {
    // The cursor names its conversation; it must be this one (checked against the row below).
    scope = Buffer.from(after, 'base64url').toString('utf8').split(':')[1] ?? null;
    key = decodeCursor('msg', scope ?? '', after);
  }
  const rows = await sql`
    select c.id as conversation_id, c.phone_number, m.id, m.direction, m.body, m.media_urls, m.status, m.sentiment,
           m.segments, m.created_at
    from conversations c
    left join lateral (
      select id, direction, body, media_urls, status, sentiment, segments, created_at from messages
      where organization_id = c.organization_id and conversation_id = c.id
        ${key ? sql`and (created_at, id) < (${key.at.toISOString()}::timestamptz, ${key.id}::uuid)` : sql``}
      order by created_at desc, id desc limit ${first + 1}
    ) m on true
    where c.organization_id = ${organizationId} and c.phone_number = ${phoneNumber}`;
  if (rows.length === 0) return { data: { conversation: null } };
  const conversationId = rows[0]!.conversation_id as string;
  if (scope !== null && scope !== conversationId) return { errors: [{ message: 'after is not a valid cursor for this list' }], data: null };
  const page = rows[0]!.id === null ? [] : rows.slice(0, first);
  const edges = page.map((m) => ({
    cursor: encodeCursor('msg', conversationId, { at: m.created_at, id: m.id }),
    node: {
      id: globalId('Message', m.id),
      direction: upper(m.direction),
      body: m.body,
      mediaUrls: m.media_urls,
      status: m.direction === 'outgoing' ? upper(m.status) : null,
      sentiment: upper(m.sentiment),
      segments: m.segments,
      createdAt: m.created_at.toISOString(),
    },
  }));
  return {
    data: {
      conversation: {
        id: globalId('Conversation', conversationId),
        phoneNumber: rows[0]!.phone_number,
        messages: { edges, pageInfo: { hasNextPage: rows.length > first, endCursor: edges.at(-1)?.cursor ?? null } },
      },
    },
  };
}

// The REST route's published statuses: earlier provider states read as sent.
const PUBLISHED_STATUS: Record<string, string> = { delivered: 'delivered', read: 'delivered', partially_delivered: 'delivered', undelivered: 'undelivered', failed: 'failed', canceled: 'failed' };

// REST GET /api/conversations/{phoneNumber}/messages, first page: the organization's timezone, the conversation
// and its history (scheduled and canceled replies left out) in one statement, shaped as the gateway's route does.
async function restMessages(organizationId: string, phoneNumber: string, limit: number) {
  statements += 1;
  const rows = await sql`
    select o.timezone, c.id as conversation_id, m.id, m.direction, m.body, m.media_urls, m.status, m.sentiment,
           m.sentiment_score, m.category, m.requires_response, m.opt_out_detected, m.created_at
    from organizations o
    left join conversations c on c.organization_id = o.id and c.phone_number = ${phoneNumber}
    left join lateral (
      select id, direction, body, media_urls, status, sentiment, sentiment_score, category, requires_response, opt_out_detected, created_at
      from messages
      where organization_id = c.organization_id and conversation_id = c.id
        and status is distinct from 'scheduled' and status is distinct from 'canceled'
      order by created_at desc, id desc limit ${limit + 1}
    ) m on true
    where o.id = ${organizationId}`;
  if (rows.length === 0) return null;
  const page = rows[0]!.id === null ? [] : rows.slice(0, limit);
  const last = page.at(-1);
  return {
    messages: page.map((m) => ({
      id: m.id,
      direction: m.direction,
      message: m.body,
      mediaUrl: m.media_urls[0] ?? null,
      mediaUrls: m.media_urls.length > 0 ? m.media_urls : null,
      status: m.direction === 'outgoing' ? (PUBLISHED_STATUS[m.status] ?? 'sent') : null,
      sentiment: m.sentiment,
      sentimentScore: m.sentiment_score,
      messageCategory: m.category,
      requiresResponse: m.requires_response,
      optOutDetected: m.opt_out_detected,
      timestamp: m.created_at.toISOString(),
    })),
    timezone: rows[0]!.timezone,
    cursor: rows.length > limit && last ? encodeCursor('msg', rows[0]!.conversation_id, { at: last.created_at, id: last.id }) : null,
    hasMore: rows.length > limit,
  };
}

const safeDecode = (segment: string) => {
  try {
    return decodeURIComponent(segment);
  } catch {
    return '';
  }
};

const REST_MESSAGES = /^\/api\/conversations\/([^/]+)\/messages$/;

function send(res: ServerResponse, status: number, body: unknown) {
  const json = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(json) });
  res.end(json);
}

const server = createServer((req, res) => {
  void (async () => {
    const target = new URL(req.url ?? '/', 'http://floor');
    const organizationId = await authenticate(req);
    if (!organizationId) return send(res, 401, { errors: [{ message: 'unauthenticated' }] });
    if (target.pathname === '/q1') return send(res, 200, await inbox(organizationId, Number(target.searchParams.get('first') ?? 20)));
    if (target.pathname === '/q2') {
      const phone = parsePhone(target.searchParams.get('phoneNumber') ?? '');
      if (!phone) return send(res, 400, { errors: [{ message: 'invalid phone number' }] });
      return send(res, 200, await thread(organizationId, phone, Number(target.searchParams.get('first') ?? 50), target.searchParams.get('after')));
    }
    const rest = REST_MESSAGES.exec(target.pathname);
    if (rest) {
      const phone = parsePhone(safeDecode(rest[1]!));
      if (!phone) return send(res, 400, { errors: [{ message: 'invalid phone number' }] });
      const body = await restMessages(organizationId, phone, Math.min(Number(target.searchParams.get('limit') ?? 50), 200));
      return body ? send(res, 200, body) : send(res, 404, { errors: [{ message: 'organization not found' }] });
    }
    send(res, 404, { errors: [{ message: 'not found' }] });
  })().catch((error) => {
    console.error(error);
    if (!res.headersSent) send(res, 500, { errors: [{ message: 'internal error' }] });
  });
});
server.keepAliveTimeout = 65_000;
reportStats(server, () => ({ statements }));
server.listen(port, '127.0.0.1', () => console.log(`floor listening on ${port}`));
