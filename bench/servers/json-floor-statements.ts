// The second floor's SQL: one statement per request whose single text column is the whole response body,
// byte for byte what the gateway writes (run.ts compares them). Objects are row_to_json over LATERAL
// subselects named like the gateway's fields, lists array_to_json(array_agg(...)): both write compact JSON in
// column order, where json_build_object and json_agg would add spaces and line breaks. Page sizes are written
// into the text, as the gateway does, so PostgreSQL settles on a generic plan (a LIMIT parameter kept it
// planning each execution: bench/optimizations.md, issue 16); each text is built once and prepared.

/** A global id as the gateway writes it: base64 of "Type:uuid". Under 57 bytes, so one base64 line (no line break to strip). */
const globalId = (type: string, id: string) => `encode(convert_to('${type}:' || ${id}, 'UTF8'), 'base64')`;

/**
 * A keyset cursor as encodeCursor writes it: unpadded base64url of "kind:scope:epoch ms:id". encode() wraps base64
 * at 76 characters, so its line breaks go too. Chained replace() costs half of what one translate() does, and
 * date_part's float epoch less than extract's numeric one (timestamps are timestamp(3): the rounding is exact).
 */
const cursor = (kind: string, scope: string, at: string, id: string) =>
  `replace(replace(replace(rtrim(encode(convert_to('${kind}:' || ${scope} || ':' || round(date_part('epoch', ${at}) * 1000)::bigint || ':' || ${id}, 'UTF8'), 'base64'), '='), '+', '-'), '/', '_'), E'\\n', '')`;

/**
 * A LATERAL subquery PostgreSQL pulls up into its parent is substituted at each reference to its columns, so the edge's
 * cursor (in the edge's JSON and in endCursor) would be computed twice; OFFSET 0 keeps it a subquery, computed once.
 */
const ONCE_PER_ROW = 'offset 0';

/** Date#toISOString: UTC, milliseconds, Z. */
const isoTime = (at: string) => `to_char(${at} at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`;

/** The GraphQL enums are the stored values in capitals; a message's status is shown for outgoing ones only. */
const graphqlStatus = (m: string) => `case when ${m}.direction = 'outgoing' then upper(${m}.status) end`;

/**
 * Q1: conversations(first) with contact, lastMessage and messages(first: 5), newest activity first. $1 organization.
 * The first+1st conversation only says there is a next page: its messages are not read.
 */
export function inboxStatement(first: number): string {
  return `
with listed as (
  select id, phone_number, unread_count, last_message_at, contact_id, last_message_id
  from conversations
  where organization_id = $1::uuid and not is_archived
  order by last_message_at desc, id desc
  limit ${first + 1}
),
edges as (
  select l.last_message_at, l.id, edge.cursor, row_to_json(edge) as edge
  from (select * from listed order by last_message_at desc, id desc limit ${first}) l
  left join contacts ct on ct.organization_id = $1::uuid and ct.id = l.contact_id
  left join messages lm on lm.organization_id = $1::uuid and lm.id = l.last_message_id
  cross join lateral (
    select coalesce(array_to_json(array_agg(row_to_json(recent_edge) order by m.created_at desc, m.id desc)), '[]') as edges
    from (
      select id, direction, body, status, created_at from messages
      where organization_id = $1::uuid and conversation_id = l.id
      order by created_at desc, id desc
      limit 5
    ) m
    cross join lateral (
      select ${globalId('Message', 'm.id')} as id, upper(m.direction) as direction, m.body, ${graphqlStatus('m')} as status,
        ${isoTime('m.created_at')} as "createdAt"
    ) recent_node
    cross join lateral (select row_to_json(recent_node) as node) recent_edge
  ) recent
  cross join lateral (
    select ${globalId('Contact', 'ct.id')} as id, ct.first_name as "firstName", ct.last_name as "lastName"
  ) contact
  cross join lateral (
    select ${globalId('Message', 'lm.id')} as id, upper(lm.direction) as direction, lm.body, ${isoTime('lm.created_at')} as "createdAt"
  ) last_message
  cross join lateral (select recent.edges) messages
  cross join lateral (
    select ${globalId('Conversation', 'l.id')} as id, l.phone_number as "phoneNumber", l.unread_count as "unreadCount",
      ${isoTime('l.last_message_at')} as "lastMessageAt",
      case when ct.id is null then null else row_to_json(contact) end as contact,
      case when lm.id is null then null else row_to_json(last_message) end as "lastMessage",
      row_to_json(messages) as messages
  ) node
  cross join lateral (
    select ${cursor('conv', '$1::uuid', 'l.last_message_at', 'l.id')} as cursor, row_to_json(node) as node
    ${ONCE_PER_ROW}
  ) edge
)
select '{"data":{"conversations":' || row_to_json(connection)::text || '}}'
from (
  select coalesce(array_to_json(array_agg(edge order by last_message_at desc, id desc)), '[]') as edges,
    (array_agg(cursor order by last_message_at desc, id desc))[count(*)] as end_cursor
  from edges
) page
cross join lateral (select (select count(*) from listed) > ${first} as "hasNextPage", page.end_cursor as "endCursor") page_info
cross join lateral (select page.edges, row_to_json(page_info) as "pageInfo") connection`;
}

/** Older than the cursor's (created_at, id): $3, $4. A row comparison, so PostgreSQL bounds the index walk with it. */
const olderThanCursor = 'and (created_at, id) < ($3::timestamptz, $4::uuid)';

/**
 * Q2 / Q3: conversation(phoneNumber) { id phoneNumber messages(first, after) { edges { cursor node } pageInfo } }.
 * $1 organization, $2 phone number; with a cursor also $3, $4 its key and $5 the conversation it was issued for,
 * and a second column says whether that is this conversation (else the cursor is refused).
 */
export function threadStatement(first: number, withCursor: boolean): string {
  return `
select case when c.id is null then '{"data":{"conversation":null}}'
  else '{"data":{"conversation":' || row_to_json(conversation)::text || '}}' end${withCursor ? ',\n  c.id is null or c.id = $5::uuid' : ''}
from (values (1)) as one
left join conversations c on c.organization_id = $1::uuid and c.phone_number = $2
cross join lateral (
  select
    coalesce(array_to_json((array_agg(row_to_json(edge) order by m.created_at desc, m.id desc))[1:${first}]), '[]') as edges,
    count(*) > ${first} as has_next,
    (array_agg(edge.cursor order by m.created_at desc, m.id desc))[least(count(*), ${first})] as end_cursor
  from (
    select id, direction, body, media_urls, status, sentiment, segments, created_at from messages
    where organization_id = c.organization_id and conversation_id = c.id ${withCursor ? olderThanCursor : ''}
    order by created_at desc, id desc
    limit ${first + 1}
  ) m
  cross join lateral (
    select ${globalId('Message', 'm.id')} as id, upper(m.direction) as direction, m.body, m.media_urls as "mediaUrls",
      ${graphqlStatus('m')} as status, upper(m.sentiment) as sentiment, m.segments, ${isoTime('m.created_at')} as "createdAt"
  ) node
  cross join lateral (
    select ${cursor('msg', 'c.id', 'm.created_at', 'm.id')} as cursor, row_to_json(node) as node
    ${ONCE_PER_ROW}
  ) edge
) page
cross join lateral (select page.has_next as "hasNextPage", page.end_cursor as "endCursor") page_info
cross join lateral (select page.edges, row_to_json(page_info) as "pageInfo") connection
cross join lateral (
  select ${globalId('Conversation', 'c.id')} as id, c.phone_number as "phoneNumber", row_to_json(connection) as messages
) conversation`;
}

/**
 * REST GET /api/conversations/{phoneNumber}/messages: { messages, timezone, cursor, hasMore } as the gateway's
 * route writes it (published statuses, history only: scheduled and canceled replies left out). $1 organization,
 * $2 phone number; with a cursor as threadStatement, except that a number without a conversation refuses every
 * cursor, as the route does. No row: the organization is gone.
 */
export function restMessagesStatement(limit: number, withCursor: boolean): string {
  return `
select row_to_json(body)::text${withCursor ? ',\n  coalesce(c.id = $5::uuid, false)' : ''}
from organizations o
left join conversations c on c.organization_id = o.id and c.phone_number = $2
left join lateral (
  select
    coalesce(array_to_json((array_agg(row_to_json(item) order by m.created_at desc, m.id desc))[1:${limit}]), '[]') as messages,
    count(*) > ${limit} as has_more,
    (array_agg(m.created_at order by m.created_at desc, m.id desc))[${limit}] as last_at,
    (array_agg(m.id order by m.created_at desc, m.id desc))[${limit}] as last_id
  from (
    select id, direction, body, media_urls, status, sentiment, sentiment_score, category, requires_response, opt_out_detected, created_at
    from messages
    where organization_id = c.organization_id and conversation_id = c.id ${withCursor ? olderThanCursor : ''}
      and status is distinct from 'scheduled' and status is distinct from 'canceled'
    order by created_at desc, id desc
    limit ${limit + 1}
  ) m
  cross join lateral (
    select m.id, m.direction, m.body as message, m.media_urls[1] as "mediaUrl",
      case when cardinality(m.media_urls) > 0 then m.media_urls end as "mediaUrls",
      case when m.direction <> 'outgoing' then null
        when m.status in ('delivered', 'read', 'partially_delivered') then 'delivered'
        when m.status = 'undelivered' then 'undelivered'
        when m.status in ('failed', 'canceled') then 'failed'
        else 'sent' end as status,
      m.sentiment, m.sentiment_score as "sentimentScore", m.category as "messageCategory",
      m.requires_response as "requiresResponse", m.opt_out_detected as "optOutDetected", ${isoTime('m.created_at')} as timestamp
  ) item
) page on true
cross join lateral (
  select coalesce(page.messages, '[]') as messages, o.timezone,
    case when page.has_more then ${cursor('msg', 'c.id', 'page.last_at', 'page.last_id')} end as cursor,
    coalesce(page.has_more, false) as "hasMore"
) body
where o.id = $1::uuid`;
}
