import { createHash } from 'node:crypto';
import type { Sql } from 'postgres';
import { SegmentedMessage } from 'sms-segments-calculator';
import { analyzeInbound } from '../../src/services/analysis.js';
import { hashApiToken } from '../../src/services/auth.js';
import { messageCursor } from '../../src/services/messages.js';
import { FIRST_NAMES, INBOUND_BODIES, LAST_NAMES, MEDIA_HOSTS, OUTBOUND_BODIES } from './texts.js';

// The benchmark dataset, generated inside PostgreSQL with generate_series: no row crosses the wire.
// Every "random" choice is a slice of md5(seed, row key), so one seed always gives the same rows, ids
// and API tokens. Conversations' last message columns, unread counts and waiting times are derived from
// the same expressions as their messages, so the data is what the gateway itself would have stored.

export type DatasetOptions = {
  /**
   * What the loader loads: bump it when that changes, so a dataset of an older loader reads as a different
   * one (`sameDataset`) and is reloaded. Absent (undefined): before the team inbox; 2: members, a user token
   * per organization, conversation statuses, assignees and waiting times.
   */
  version: number;
  seed: number;
  organizations: number;
  contactsPerOrganization: number;
  /** Messages in all. */
  messages: number;
  /** Messages in the first conversation of the first organization (the deep-paging thread). */
  bigConversation: number;
};

/** The loader's version (DatasetOptions.version). */
export const DATASET_VERSION = 2;

export const FULL_DATASET: DatasetOptions = {
  version: DATASET_VERSION,
  seed: 1,
  organizations: 10,
  contactsPerOrganization: 1_000,
  messages: 1_000_000,
  bigConversation: 200_000,
};

export const QUICK_DATASET: DatasetOptions = {
  version: DATASET_VERSION,
  seed: 1,
  organizations: 10,
  contactsPerOrganization: 100,
  messages: 50_000,
  bigConversation: 20_000,
};

export type DatasetInfo = DatasetOptions & {
  loadedAt: string;
  loadSeconds: number;
  /** The organization that owns the big conversation: the one every scenario reads as. */
  organizationId: string;
  apiToken: string;
  /** A user token of an AGENT of that organization (the team inbox scenarios: `mine` needs a person). */
  agentToken: string;
  agentUserId: string;
  /** E.164 number of the big conversation. */
  bigConversationPhone: string;
  bigConversationId: string;
  conversations: number;
};

/** Fixed "now" of the dataset: timestamps must not depend on the day it is loaded. */
const ANCHOR = '2025-06-01T12:00:00.000Z';
const AREA_CODES = ['212', '415', '512', '617', '704', '312', '206', '303', '404', '305', '919', '614'];
const TIMEZONES = ['America/New_York', 'America/Chicago', 'America/Denver', 'America/Los_Angeles'];

/** Deterministic API token of organization `index`, shaped like the ones the gateway issues. */
export function benchToken(seed: number, index: number): string {
  return `cgw_${createHash('sha256').update(`bench-token:${seed}:${index}`).digest('base64url')}`;
}

/** Deterministic user token of organization `index`'s agent AGENT_MEMBER (acts as that person, in that organization only). */
export function benchUserToken(seed: number, index: number): string {
  return `cgw_${createHash('sha256').update(`bench-user-token:${seed}:${index}`).digest('base64url')}`;
}

/** Every organization's team: member 0 is its OWNER, members 1-4 AGENTs. */
export const MEMBERS_PER_ORGANIZATION = 5;
/** The member whose user token the team inbox scenarios use. */
export const AGENT_MEMBER = 1;

function validate(options: DatasetOptions) {
  const ints = Object.entries(options).every(([, v]) => Number.isSafeInteger(v) && v >= 0);
  const conversations = options.organizations * options.contactsPerOrganization;
  if (!ints || options.organizations < 1 || options.contactsPerOrganization < 2 || options.contactsPerOrganization > 10_000) {
    throw new Error('dataset: organizations >= 1 and 2 <= contactsPerOrganization <= 10000, all integers');
  }
  if (options.bigConversation < 1 || options.messages - options.bigConversation < conversations - 1) {
    throw new Error('dataset: every conversation needs at least one message');
  }
}

/** The hex digest as a number: `hexInt('hx', 1)` is the first 32 bits of column hx. */
const hexInt = (column: string, part: number) => `('x' || substr(${column}, ${1 + (part - 1) * 8}, 8))::bit(32)::bigint`;

type Template = {
  body: string;
  segments: number;
  encoding: string;
  sentiment: string | null;
  score: number | null;
  category: string | null;
  requiresResponse: boolean | null;
  optOut: boolean | null;
};

function templates(bodies: readonly string[], inbound: boolean): Template[] {
  return bodies.map((body) => {
    const segmented = new SegmentedMessage(body, 'auto');
    const analysis = inbound ? analyzeInbound(body) : null;
    return {
      body,
      segments: segmented.segmentsCount,
      encoding: segmented.encodingName,
      sentiment: analysis?.sentiment ?? null,
      score: analysis?.sentimentScore ?? null,
      category: analysis?.category ?? null,
      requiresResponse: analysis?.requiresResponse ?? null,
      optOut: analysis?.optOutDetected ?? null,
    };
  });
}

/** Application tables, children first; the loader empties all of them. */
const APP_TABLES = [
  'short_links',
  'consent_events',
  'message_status_events',
  'messages',
  'conversations',
  'contacts',
  'phone_numbers',
  'api_tokens',
  'audit_events',
  'memberships',
  'users',
  'organizations',
];

/** Refuses to empty a database that holds anything but a previous benchmark dataset. */
export async function assertBenchDatabase(sql: Sql, force: boolean) {
  const [marker] = await sql`select to_regclass('public.bench_dataset') is not null as present`;
  if (marker!.present || force) return;
  const [orgs] = await sql`select count(*)::int as n from organizations`;
  if (orgs!.n > 0) {
    throw new Error(
      'This database holds organizations that the benchmark did not create; loading would delete them. ' +
        'Point DATABASE_URL at a dedicated database (it is created if missing), or pass --force.',
    );
  }
}

export async function readDatasetInfo(sql: Sql): Promise<DatasetInfo | null> {
  const [marker] = await sql`select to_regclass('public.bench_dataset') is not null as present`;
  if (!marker!.present) return null;
  const [row] = await sql`select info from bench_dataset limit 1`;
  return (row?.info as DatasetInfo | undefined) ?? null;
}

/** The cursor of a message halfway down the big conversation (at most 100,000 deep): Q3's deep page. */
export async function deepMessageCursor(sql: Sql, dataset: DatasetInfo): Promise<{ cursor: string; depth: number }> {
  const depth = Math.min(100_000, Math.floor(dataset.bigConversation / 2));
  const [deep] = await sql`
    select id, conversation_id, created_at from messages
    where organization_id = ${dataset.organizationId} and conversation_id = ${dataset.bigConversationId}
    order by created_at desc, id desc offset ${depth - 1} limit 1`;
  return { cursor: messageCursor({ conversationId: deep!.conversation_id, createdAt: deep!.created_at, id: deep!.id }), depth };
}

/** An organization's API token, its default sending number and one of its contacts: where a write benchmark sends. */
export type WriteTarget = { organizationId: string; apiToken: string; sendingNumber: string; contactPhone: string };

/**
 * Write targets in every organization but the readers' one: textable, opted-in contacts with a conversation,
 * interleaved across organizations (the first contact of each, then the second, ...) so consecutive requests
 * hit different organizations.
 */
export async function writeTargets(sql: Sql, dataset: DatasetInfo, limit?: number): Promise<WriteTarget[]> {
  const tokens = Array.from({ length: dataset.organizations }, (_, index) => benchToken(dataset.seed, index)).slice(1);
  const tokenOf = new Map(tokens.map((token) => [hashApiToken(token), token]));
  const rows = await sql`
    select t.token_hash, t.organization_id, n.phone_number as sending_number, c.phone_number as contact_phone,
           row_number() over (partition by t.organization_id order by c.phone_number) as rank
    from api_tokens t
    join phone_numbers n on n.organization_id = t.organization_id and n.is_default
    join contacts c on c.organization_id = t.organization_id and c.is_textable and c.is_opted_in
    join conversations v on v.organization_id = c.organization_id and v.phone_number = c.phone_number
    where t.token_hash in ${sql(tokens.map(hashApiToken))}
    order by rank, t.organization_id
    ${limit === undefined ? sql`` : sql`limit ${limit}`}`;
  return rows.map((row) => ({
    organizationId: row.organization_id as string,
    apiToken: tokenOf.get(row.token_hash as string)!,
    sendingNumber: row.sending_number as string,
    contactPhone: row.contact_phone as string,
  }));
}

export const sameDataset = (info: DatasetInfo | null, options: DatasetOptions) =>
  info !== null && (Object.keys(options) as (keyof DatasetOptions)[]).every((key) => info[key] === options[key]);

/** Empties the application tables and loads the dataset; the database must already be migrated. */
export async function loadDataset(sql: Sql, options: DatasetOptions, log: (line: string) => void = () => {}): Promise<DatasetInfo> {
  validate(options);
  const started = performance.now();
  const { seed, organizations: O, contactsPerOrganization: C, messages: M, bigConversation: BIG } = options;
  const N = O * C;
  const rest = M - BIG;
  const base = Math.floor(rest / (N - 1));
  const remainder = rest - base * (N - 1);
  const inbound = templates(INBOUND_BODIES, true);
  const outbound = templates(OUTBOUND_BODIES, false);
  const tokens = Array.from({ length: O }, (_, i) => benchToken(seed, i));
  const userTokens = Array.from({ length: O }, (_, i) => benchUserToken(seed, i));
  const P = MEMBERS_PER_ORGANIZATION;
  const step = (label: string, since: number) => log(`  ${label} ${((performance.now() - since) / 1000).toFixed(1)}s`);

  // h(tag, key): 48 bits of md5(seed:tag:key) as bigint; u(tag, key): the whole digest as a uuid.
  const h = (tag: string, key: string) => `('x' || substr(md5('${seed}:${tag}:' || (${key})::text), 1, 12))::bit(48)::bigint`;
  const u = (tag: string, key: string) => `md5('${seed}:${tag}:' || (${key})::text)::uuid`;
  // Member r of organization o is user o:r.
  const user = (o: string, r: string) => u('user', `(${o}) || ':' || (${r})`);
  const names = (list: readonly string[]) => `array[${list.map((n) => `'${n.replaceAll("'", "''")}'`).join(',')}]`;
  // When message j of conversation c (alias of a bench_conv row) was sent, j = 0 the newest; hx is its
  // md5 (messageHash). Messages and the conversations' waiting time both read it, so they agree.
  const messageHash = (c: string, j: string) => `md5('${seed}:m:' || ${c}.k || ':' || (${j}))`;
  const sentAt = (c: string, j: string, hx: string) =>
    `${c}.last_at - ((${j}) * ${c}.gap + case when (${j}) = 0 then 0 else ${hexInt(hx, 1)} % (${c}.gap / 2) end) * interval '1 ms'`;
  const created = `timestamptz '${ANCHOR}' - interval '400 days'`;

  await sql.begin(async (tx) => {
    let t = performance.now();
    await tx.unsafe(`truncate ${APP_TABLES.join(', ')} cascade`);
    await tx`create table if not exists bench_dataset (info jsonb not null)`;
    await tx`truncate bench_dataset`;

    // Bulk-load recipe: drop the messages table's secondary indexes and foreign keys, insert, rebuild.
    // Definitions are read from the catalog, so this follows whatever the migrations created.
    const indexes = await tx<{ name: string; def: string }[]>`
      select i.indexname as name, i.indexdef as def from pg_indexes i
      where i.schemaname = 'public' and i.tablename = 'messages'
        and not exists (select 1 from pg_constraint c where c.conname = i.indexname)`;
    const foreignKeys = await tx<{ name: string; def: string }[]>`
      select conname as name, pg_get_constraintdef(oid) as def from pg_constraint
      where conrelid = 'public.messages'::regclass and contype = 'f'`;
    for (const fk of foreignKeys) await tx.unsafe(`alter table messages drop constraint "${fk.name}"`);
    for (const index of indexes) await tx.unsafe(`drop index "${index.name}"`);

    await tx.unsafe(`
      create temp table bench_tpl (kind text, i int, body text, segments int, encoding text, sentiment text,
        score float8, category text, requires_response boolean, opt_out boolean, primary key (kind, i)) on commit drop`);
    for (const [kind, list] of [['incoming', inbound], ['outgoing', outbound]] as const) {
      await tx`insert into bench_tpl ${tx(list.map((tpl, i) => ({ kind, i, ...tpl, requires_response: tpl.requiresResponse, opt_out: tpl.optOut })), 'kind', 'i', 'body', 'segments', 'encoding', 'sentiment', 'score', 'category', 'requires_response', 'opt_out')}`;
    }

    await tx.unsafe(`
      insert into organizations (id, name, timezone, credits, created_at)
      select ${u('org', 'o')}, 'Bench organization ' || (o + 1), (array${JSON.stringify(TIMEZONES).replaceAll('"', "'")})[1 + o % ${TIMEZONES.length}],
             1000000000, timestamptz '${ANCHOR}' - interval '400 days'
      from generate_series(0, ${O - 1}) o`);
    await tx.unsafe(
      `insert into api_tokens (organization_id, id, token_hash, name, created_at)
       select ${u('org', 'o')}, ${u('token', 'o')}, ($1::text[])[o + 1], 'benchmark', timestamptz '${ANCHOR}' - interval '400 days'
       from generate_series(0, ${O - 1}) o`,
      [tokens.map(hashApiToken)],
    );
    // Each organization's team of P: member 0 its OWNER, the others AGENTs. Emails are unique across
    // organizations (users are global). One AGENT per organization has a user token of its own.
    await tx.unsafe(`
      insert into users (id, email, name, created_at, updated_at)
      select ${user('o', 'r')}, 'member' || r || '@org' || (o + 1) || '.bench.example',
             (${names(FIRST_NAMES)})[1 + ${h('userfirst', "o || ':' || r")} % ${FIRST_NAMES.length}] || ' ' ||
             (${names(LAST_NAMES)})[1 + ${h('userlast', "o || ':' || r")} % ${LAST_NAMES.length}],
             ${created}, ${created}
      from generate_series(0, ${O - 1}) o cross join generate_series(0, ${P - 1}) r`);
    await tx.unsafe(`
      insert into memberships (organization_id, user_id, role, created_at, updated_at)
      select ${u('org', 'o')}, ${user('o', 'r')}, case when r = 0 then 'owner' else 'agent' end, ${created}, ${created}
      from generate_series(0, ${O - 1}) o cross join generate_series(0, ${P - 1}) r`);
    await tx.unsafe(
      `insert into api_tokens (organization_id, id, token_hash, name, user_id, any_organization, created_at)
       select ${u('org', 'o')}, ${u('usertoken', 'o')}, ($1::text[])[o + 1], 'benchmark agent', ${user('o', String(AGENT_MEMBER))}, false, ${created}
       from generate_series(0, ${O - 1}) o`,
      [userTokens.map(hashApiToken)],
    );
    const area = (o: string) => `(array${JSON.stringify(AREA_CODES).replaceAll('"', "'")})[1 + (${o}) % ${AREA_CODES.length}]`;
    // Sending numbers are global: +1 <area> 555 9<org>, apart from contacts' 555 0000-8999.
    await tx.unsafe(`
      insert into phone_numbers (organization_id, id, phone_number, is_default, created_at)
      select ${u('org', 'o')}, ${u('number', 'o')}, '+1' || ${area('o')} || '5559' || lpad(o::text, 3, '0'), true,
             timestamptz '${ANCHOR}' - interval '400 days'
      from generate_series(0, ${O - 1}) o`);

    // One row per conversation with everything its messages are derived from.
    // n: message count (the big thread first; the others pair up +d/-d around the mean, so the total
    // is exact); u: trailing inbound messages; gap: spacing of messages in ms.
    // status: 50% open, 10% pending, 5% snoozed, 35% resolved; assignee: 80% of conversations, member
    // c % P of the organization (round robin over its contacts), the others unassigned.
    await tx.unsafe(`
      create temp table bench_conv on commit drop as
      select k, k / ${C} as o, k % ${C} as c, n, u, unread, archived, starred, gap,
             timestamptz '${ANCHOR}' - (case when k = 0 then 300000 else ${h('last', 'k')} % (60 * 86400000::bigint) end) * interval '1 ms' as last_at,
             case when status_roll < 50 then 'open' when status_roll < 60 then 'pending'
                  when status_roll < 65 then 'snoozed' else 'resolved' end as status,
             case when assigned then ${user(`k / ${C}`, `k % ${C} % ${P}`)} end as assignee
      from (
        select k, n, least(${h('u', 'k')} % 4, n) as u,
               ${h('unread', 'k')} % 100 < 40 as unread,
               ${h('arch', 'k')} % 100 < 10 as archived,
               ${h('star', 'k')} % 100 < 5 as starred,
               ${h('status', 'k')} % 100 as status_roll,
               ${h('assign', 'k')} % 100 < 80 as assigned,
               case when k = 0 then 60000 else 6 * 3600000 end::bigint as gap
        from (
          select k, case when k = 0 then ${BIG} else
                   ${base} + (case when (k - 1) / 2 * 2 + 1 > ${N - 2} then 0
                                   else ${h('n', '(k - 1) / 2')} % ${base} * (case when (k - 1) % 2 = 0 then 1 else -1 end) end)
                   + (case when k - 1 < ${remainder} then 1 else 0 end) end as n
          from generate_series(0, ${N - 1}) k
        ) counts
      ) flags`);

    await tx.unsafe(`
      insert into contacts (organization_id, id, phone_number, first_name, last_name, is_textable, is_opted_in, created_at, updated_at)
      select ${u('org', 'o')}, ${u('contact', 'k')},
             '+1' || ${area('o')} || '555' || lpad(c::text, 4, '0'),
             (${names(FIRST_NAMES)})[1 + ${h('first', 'k')} % ${FIRST_NAMES.length}],
             (${names(LAST_NAMES)})[1 + ${h('lastname', 'k')} % ${LAST_NAMES.length}],
             case when ${h('textable', 'k')} % 100 = 0 then null else true end,
             ${h('optin', 'k')} % 50 <> 0,
             timestamptz '${ANCHOR}' - interval '400 days', timestamptz '${ANCHOR}' - interval '400 days'
      from bench_conv`);
    step('organizations, members, tokens, numbers, contacts', t);

    // Last message columns are filled from the messages below. A snooze ends in 2125, so the gateway's
    // sweeper never wakes one during a run; a resolved thread was resolved 5 minutes after its last message.
    // waiting_since: the oldest of the u trailing inbound messages (j = u - 1), none when u = 0.
    t = performance.now();
    await tx.unsafe(`
      insert into conversations (organization_id, id, contact_id, phone_number, last_message_id, last_message_at,
                                 unread_count, is_archived, is_starred, status, snoozed_until, resolved_at,
                                 assignee_user_id, waiting_since, created_at, updated_at)
      select ${u('org', 'o')}, ${u('conv', 'k')}, ${u('contact', 'k')}, '+1' || ${area('o')} || '555' || lpad(c::text, 4, '0'),
             ${u('msg', "k || ':0'")}, last_at,
             case when unread and k > 0 then u when k = 0 then u else 0 end,
             archived and not (unread and u > 0) and k > 0, starred,
             status, case when status = 'snoozed' then timestamptz '2125-01-01T00:00:00Z' end,
             case when status = 'resolved' then last_at + interval '5 minutes' end,
             assignee, case when u > 0 then ${sentAt('b', 'b.u - 1', messageHash('b', 'b.u - 1'))} end,
             last_at - (n * gap) * interval '1 ms', last_at
      from bench_conv b`);

    // Messages, newest first per conversation (j = 0 is the last one). Directions: j < u inbound, j = u
    // outbound, older ones either way. One md5 per message feeds every choice. Replies in an assigned
    // conversation were sent by its assignee, the others by an integration (no person).
    const nIn = inbound.length;
    const nOut = outbound.length;
    await tx.unsafe(`
      insert into messages (organization_id, id, conversation_id, direction, body, media_urls, status, provider,
        provider_message_id, from_phone_number_id, sentiment, sentiment_score, category, requires_response,
        opt_out_detected, error_code, segments, encoding, credits_charged, sent_by_user_id, created_at, updated_at)
      select m.org_id, m.id, m.conv_id, m.direction, t.body,
             case when not m.media then '{}'::text[]
                  when m.direction = 'incoming' then array['${MEDIA_HOSTS.inbound}/MM' || m.hx || '/Media/ME' || md5(m.hx)]
                  else array['${MEDIA_HOSTS.outbound}/' || substr(m.hx, 1, 16) || '.jpg'] end,
             case when m.direction = 'incoming' then null
                  when m.r3 < 84 then 'delivered' when m.r3 < 92 then 'sent' when m.r3 < 95 then 'failed'
                  when m.r3 < 98 then 'undelivered' else 'sending' end,
             'twilio', 'SM' || replace(m.id::text, '-', ''),
             case when m.direction = 'outgoing' then ${u('number', 'm.o')} end,
             t.sentiment, t.score, t.category, t.requires_response, t.opt_out,
             case when m.direction = 'outgoing' and m.r3 >= 92 and m.r3 < 98 then (array[30003, 30006, 30005])[1 + m.r3 % 3] end,
             t.segments, t.encoding,
             case when m.direction = 'incoming' then 0 when m.media then 3 else t.segments end,
             case when m.direction = 'outgoing' then m.assignee end,
             m.created_at, m.created_at
      from (
        select c.o, ${u('org', 'c.o')} as org_id, ${u('conv', 'c.k')} as conv_id, ${u('msg', "c.k || ':' || j")} as id, x.hx, c.assignee,
               case when j < c.u then 'incoming' when j = c.u then 'outgoing'
                    when ${hexInt('x.hx', 1)} % 100 < 50 then 'incoming' else 'outgoing' end as direction,
               ${hexInt('x.hx', 2)} as r2, ${hexInt('x.hx', 3)} % 100 as r3,
               ${hexInt('x.hx', 4)} % 100 < 3 as media,
               ${sentAt('c', 'j', 'x.hx')} as created_at
        from bench_conv c
        cross join lateral generate_series(0, c.n - 1) j
        cross join lateral (select ${messageHash('c', 'j')} as hx) x
      ) m
      join bench_tpl t on t.kind = m.direction and t.i = m.r2 % (case when m.direction = 'incoming' then ${nIn} else ${nOut} end)`);
    step(`${M.toLocaleString('en-US')} messages`, t);

    t = performance.now();
    await tx.unsafe(`
      update conversations c set last_message_body = m.body, last_direction = m.direction, last_message_at = m.created_at
      from messages m where m.organization_id = c.organization_id and m.id = c.last_message_id`);
    for (const index of indexes) await tx.unsafe(index.def);
    for (const fk of foreignKeys) await tx.unsafe(`alter table messages add constraint "${fk.name}" ${fk.def}`);
    step('indexes and foreign keys rebuilt', t);
  });

  let t = performance.now();
  // Fresh statistics and visibility maps, so the first benchmark round is not the one that sets hint bits.
  await sql.unsafe(`vacuum (analyze) organizations, users, memberships, api_tokens, phone_numbers, contacts, conversations, messages`);
  step('vacuum analyze', t);

  t = performance.now();
  const [ids] = await sql.unsafe(`select ${u('conv', '0')} as conversation, ${user('0', String(AGENT_MEMBER))} as agent`);
  const [big] = await sql`
    select c.organization_id, c.id, c.phone_number, (select count(*)::int from conversations) as conversations
    from conversations c where c.id = ${ids!.conversation}`;
  const [agent] = await sql`select user_id from memberships where organization_id = ${big!.organization_id} and user_id = ${ids!.agent} and role = 'agent'`;
  if (!agent) throw new Error('dataset: the reading organization has no agent with a user token');
  const info: DatasetInfo = {
    ...options,
    loadedAt: new Date().toISOString(),
    loadSeconds: Math.round((performance.now() - started) / 100) / 10,
    organizationId: big!.organization_id,
    apiToken: tokens[0]!,
    agentToken: userTokens[0]!,
    agentUserId: agent.user_id,
    bigConversationPhone: big!.phone_number,
    bigConversationId: big!.id,
    conversations: big!.conversations,
  };
  await sql`insert into bench_dataset (info) values (${sql.json(info as never)})`;
  return info;
}

/** Checks the invariants the gateway keeps, so a loader bug cannot make the numbers meaningless. */
export async function checkDataset(sql: Sql, options: DatasetOptions) {
  const [row] = await sql`
    select (select count(*)::int from messages) as messages,
           (select count(*)::int from conversations) as conversations,
           (select count(*)::int from contacts) as contacts,
           (select count(*)::int from conversations c where not exists (
              select 1 from messages m where m.organization_id = c.organization_id and m.id = c.last_message_id
                and m.body = c.last_message_body and m.direction = c.last_direction and m.created_at = c.last_message_at
                and not exists (select 1 from messages n where n.organization_id = c.organization_id
                                and n.conversation_id = c.id and (n.created_at, n.id) > (m.created_at, m.id)))) as bad_last,
           (select count(*)::int from conversations c where c.unread_count > (
              select count(*) from (select direction from messages m where m.organization_id = c.organization_id
                and m.conversation_id = c.id order by created_at desc, id desc limit c.unread_count) x
              where x.direction = 'incoming')) as bad_unread,
           (select count(*)::int from conversations c where c.waiting_since is distinct from (
              select min(m.created_at) from messages m where m.organization_id = c.organization_id
                and m.conversation_id = c.id and m.direction = 'incoming'
                and m.created_at > coalesce((select max(o.created_at) from messages o where o.organization_id = c.organization_id
                                             and o.conversation_id = c.id and o.direction = 'outgoing'), '-infinity'))) as bad_waiting,
           (select count(*)::int from conversations c where c.assignee_user_id is not null and not exists (
              select 1 from memberships b where b.organization_id = c.organization_id and b.user_id = c.assignee_user_id)) as bad_assignee,
           (select count(*)::int from conversations c where (c.status = 'snoozed') <> (c.snoozed_until is not null)
              or (c.status = 'resolved') <> (c.resolved_at is not null)) as bad_status,
           (select count(*)::int from memberships) as members,
           (select count(*)::int from api_tokens t where t.user_id is not null and not t.any_organization and exists (
              select 1 from memberships b where b.organization_id = t.organization_id and b.user_id = t.user_id and b.role = 'agent')) as agent_tokens`;
  const problems: string[] = [];
  if (row!.messages !== options.messages) problems.push(`messages ${row!.messages} != ${options.messages}`);
  const n = options.organizations * options.contactsPerOrganization;
  if (row!.conversations !== n) problems.push(`conversations ${row!.conversations} != ${n}`);
  if (row!.contacts !== n) problems.push(`contacts ${row!.contacts} != ${n}`);
  if (row!.bad_last > 0) problems.push(`${row!.bad_last} conversations whose last message columns disagree with their messages`);
  if (row!.bad_unread > 0) problems.push(`${row!.bad_unread} conversations whose unread count exceeds their trailing inbound messages`);
  if (row!.bad_waiting > 0) problems.push(`${row!.bad_waiting} conversations whose waiting_since disagrees with their messages`);
  if (row!.bad_assignee > 0) problems.push(`${row!.bad_assignee} conversations assigned to someone who is not a member`);
  if (row!.bad_status > 0) problems.push(`${row!.bad_status} conversations whose snoozed_until or resolved_at disagrees with their status`);
  const members = options.organizations * MEMBERS_PER_ORGANIZATION;
  if (row!.members !== members) problems.push(`memberships ${row!.members} != ${members}`);
  if (row!.agent_tokens !== options.organizations) problems.push(`agents' user tokens ${row!.agent_tokens} != ${options.organizations}`);
  if (problems.length > 0) throw new Error(`dataset check failed: ${problems.join('; ')}`);
}
