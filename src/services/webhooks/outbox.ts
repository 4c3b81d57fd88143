import { sql, type SQL } from 'drizzle-orm';
import type { DbOrTx } from '../../db/client.js';

// The outbox: each webhook event is written once (webhook_events), in the statement or transaction of the
// change it reports, so a change that rolls back sends nothing and a committed one is delivered: a
// dispatcher fans it out to the subscribed endpoints and sends it (services/webhooks/dispatcher.ts). Where
// no endpoint of the organization is subscribed, nothing is written: one index probe.
//
// Batched writers (inbound, provider answers, status callbacks) add `webhookEventsFrom` as one more CTE of
// their statement; the others call the record functions inside their transaction. Bodies are built in SQL
// from the rows as the change left them, in the REST reference's shapes (http/rest/schemas.ts).

/** `Date#toISOString`'s form, as the REST routes write times. */
export const isoTime = (expression: SQL) => sql`to_char(${expression} at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`;

/** The published status (REST `MessageJson.status`), from a provider status. */
const publishedStatus = (m: string, status: SQL) =>
  sql`case when ${sql.raw(m)}.direction <> 'outgoing' then null
      when ${status} in ('delivered', 'read', 'partially_delivered') then 'delivered'
      when ${status} = 'undelivered' then 'undelivered'
      when ${status} in ('failed', 'canceled') then 'failed'
      else 'sent' end`;

/**
 * A message as the REST messages route shows it, plus `phoneNumber` (the contact's) and `conversationId`;
 * status events add the provider's own status and error code. `m` is a messages row alias.
 */
export function messageData(m: string, phoneNumber: SQL, options: { status?: SQL; providerStatus?: boolean } = {}): SQL {
  const status = options.status ?? sql.raw(`${m}.status`);
  const a = (column: string) => sql.raw(`${m}.${column}`);
  return sql`jsonb_build_object(
    'id', ${a('id')}, 'direction', ${a('direction')}, 'message', ${a('body')},
    'mediaUrl', ${a('media_urls')}[1],
    'mediaUrls', case when cardinality(${a('media_urls')}) > 0 then to_jsonb(${a('media_urls')}) end,
    'status', ${publishedStatus(m, status)},
    'sentiment', ${a('sentiment')}, 'sentimentScore', ${a('sentiment_score')}, 'messageCategory', ${a('category')},
    'requiresResponse', ${a('requires_response')}, 'optOutDetected', ${a('opt_out_detected')},
    'timestamp', ${isoTime(a('created_at'))},
    'phoneNumber', ${phoneNumber}, 'conversationId', ${a('conversation_id')}
    ${options.providerStatus ? sql`, 'providerStatus', ${status}, 'errorCode', ${a('error_code')}` : sql``})`;
}

/** A conversation as the REST list route shows it, plus `id`, `status` and `assigneeId`. `c` conversations, `k` its contact (left joined). */
export function conversationData(c: string, k: string): SQL {
  const a = (column: string) => sql.raw(`${c}.${column}`);
  const b = (column: string) => sql.raw(`${k}.${column}`);
  return sql`jsonb_build_object(
    'id', ${a('id')}, 'phoneNumber', ${a('phone_number')}, 'contactId', ${b('id')},
    'firstName', ${b('first_name')}, 'lastName', ${b('last_name')},
    'lastMessage', ${a('last_message_body')}, 'lastMessageAt', ${isoTime(a('last_message_at'))},
    'unreadCount', ${a('unread_count')}, 'isArchived', ${a('is_archived')}, 'isStarred', ${a('is_starred')},
    'status', upper(${a('status')}), 'assigneeId', ${a('assignee_user_id')})`;
}

/**
 * `insert into webhook_events … select` one event per source row of an organization with an enabled endpoint
 * subscribed to the type (one index probe for the others; the dispatcher fans each event out to the
 * endpoints later, see dispatcher.ts). `from` is a FROM list whose rows give `organization`, `orderKey` (the
 * contact's phone number: a conversation's events and its contact's consent events keep one order) and `data`.
 */
export function webhookEventsFrom(type: string, from: SQL, columns: { organization: SQL; orderKey: SQL; data: SQL; where?: SQL; order?: SQL }): SQL {
  // Our own constant, inlined: the batched writers' statements are prepared once with placeholders only.
  const eventType = sql.raw(`'${type.replace(/[^a-z._]/g, '')}'::text`);
  const subscribed = sql`exists (select 1 from webhook_endpoints wh_e
    where wh_e.organization_id = ${columns.organization} and wh_e.enabled and ${eventType} = any(wh_e.event_types))`;
  return sql`insert into webhook_events (organization_id, type, order_key, body)
    select ${columns.organization}, ${eventType}, ${columns.orderKey},
      jsonb_build_object('type', ${eventType}, 'timestamp', ${isoTime(sql`now()`)}, 'data', ${columns.data})
    from ${from}
    where ${columns.where ? sql`${columns.where} and ` : sql``}${subscribed}
    ${columns.order ? sql`order by ${columns.order}` : sql``}`;
}

/** An event about one message (status changes outside the batched paths), from its row as it is now in this transaction. */
export async function recordMessageEvent(db: DbOrTx, type: 'message.status_changed' | 'message.sent', organizationId: string, messageId: string): Promise<void> {
  await db.execute(
    webhookEventsFrom(
      type,
      sql`messages wh_m join conversations wh_c on wh_c.organization_id = wh_m.organization_id and wh_c.id = wh_m.conversation_id`,
      {
        organization: sql`wh_m.organization_id`,
        orderKey: sql`wh_c.phone_number`,
        data: messageData('wh_m', sql`wh_c.phone_number`, { providerStatus: type === 'message.status_changed' }),
        where: sql`wh_m.organization_id = ${organizationId} and wh_m.id = ${messageId}`,
      },
    ),
  );
}

/** conversation.updated for one conversation, as this transaction left it. */
export async function recordConversationUpdated(db: DbOrTx, organizationId: string, conversationId: string): Promise<void> {
  await db.execute(
    webhookEventsFrom(
      'conversation.updated',
      sql`conversations wh_c left join contacts wh_k on wh_k.organization_id = wh_c.organization_id and wh_k.id = wh_c.contact_id`,
      {
        organization: sql`wh_c.organization_id`,
        orderKey: sql`wh_c.phone_number`,
        data: conversationData('wh_c', 'wh_k'),
        where: sql`wh_c.organization_id = ${organizationId} and wh_c.id = ${conversationId}`,
      },
    ),
  );
}

/** contact.opted_out / contact.opted_in, in the transaction of the consent change. */
export async function recordConsentEvent(
  db: DbOrTx,
  organizationId: string,
  type: 'contact.opted_out' | 'contact.opted_in',
  phoneNumber: string,
  data: Record<string, unknown>,
): Promise<void> {
  await db.execute(
    webhookEventsFrom(type, sql`(select ${organizationId}::uuid as org) wh_x`, {
      organization: sql`wh_x.org`,
      orderKey: sql`${phoneNumber}::text`,
      data: sql`${JSON.stringify(data)}::jsonb`,
    }),
  );
}
