import type { WriteTarget } from './dataset.js';

// The scenarios as each server is asked for them: the same fields everywhere.

export type ScenarioId = 'Q1' | 'Q2' | 'Q3' | 'REST' | 'Q1M' | 'Q1W' | 'QC' | 'Q4' | 'Q5';
export type ServerId = 'gateway' | 'floor' | 'pgjson' | 'postgraphile';

export const SCENARIOS: Record<ScenarioId, string> = {
  Q1: 'inbox: conversations(first: 20) with contact, lastMessage, unreadCount, messages(first: 5)',
  Q2: 'first page: conversation(phoneNumber) { messages(first: 50) } of the big conversation',
  Q3: 'deep page: the same 50 messages after a cursor deep in the big conversation',
  REST: 'GET /api/conversations/:phoneNumber/messages?limit=50 (the big conversation)',
  Q1M: "team inbox, mine: Q1's inbox (plus status) with filter { mine: true, status: [OPEN] }, as an agent (user token)",
  Q1W: "team inbox, waiting longest: Q1's inbox (plus waitingSince) with orderBy: WAITING_LONGEST, as the same agent",
  QC: 'conversationCounts { all open pending snoozed resolved unread unassigned mine waiting }, as the same agent',
  Q4: 'sendReply mutation (simulated provider) to contacts of the 9 other organizations in turn; every request sends',
  Q5: 'inbound Twilio webhook (signed, a new MessageSid each time) from contacts of the 9 other organizations in turn',
};

/** Scenarios that write: measured on the gateway only, after the reads, in an organization no read touches. */
export const WRITE_SCENARIOS: ScenarioId[] = ['Q4', 'Q5'];

/**
 * The team inbox's reads (statuses, assignees, waiting time, counts): gateway only, since neither baseline
 * has a team inbox; they read like Q1, in the reading organization, as one of its agents.
 */
export const TEAM_SCENARIOS: ScenarioId[] = ['Q1M', 'Q1W', 'QC'];

/** Scenarios no baseline serves. */
export const GATEWAY_ONLY_SCENARIOS: ScenarioId[] = [...TEAM_SCENARIOS, ...WRITE_SCENARIOS];

export type HttpRequest = {
  method: 'GET' | 'POST';
  path: string;
  headers: Record<string, string>;
  body?: string;
  /** A fresh body and headers for every request (webhooks need a new MessageSid and its signature). */
  next?: () => { body: string; headers: Record<string, string> };
};

export type ScenarioContext = {
  organizationId: string;
  apiToken: string;
  /** A user token of an AGENT of the organization (the team scenarios; absent: they are not run). */
  agentToken?: string;
  phoneNumber: string;
  /** The gateway's (and floor's) cursor of the message `depth` deep. */
  deepCursor: string;
  /** PostGraphile's own cursor for the same message. */
  postgraphileDeepCursor?: string;
  /** Where the write scenarios write: every organization but the one the reads read. */
  writer?: {
    /** (organization, contact) pairs, taken in turn: textable, opted-in contacts with a conversation. */
    targets: WriteTarget[];
    twilioAuthToken: string;
    publicBaseUrl: string;
    sign: (authToken: string, url: string, params: Record<string, string>) => string;
  };
};

/** The inbox query: `arguments` of conversations, `extra` fields of each conversation. */
const inbox = (name: string, args: string, extra = '') => `query ${name} {
  conversations(${args}) {
    edges {
      cursor
      node {
        id phoneNumber unreadCount lastMessageAt${extra}
        contact { id firstName lastName }
        lastMessage { id direction body createdAt }
        messages(first: 5) { edges { node { id direction body status createdAt } } }
      }
    }
    pageInfo { hasNextPage endCursor }
  }
}`;

export const GATEWAY_Q1 = inbox('Inbox', 'first: 20');

// The team inbox: Q1's selection, filtered to the agent's open conversations, or in WAITING_LONGEST order.
export const GATEWAY_Q1M = inbox('MyOpenInbox', 'first: 20, filter: { mine: true, status: [OPEN] }', ' status');
export const GATEWAY_Q1W = inbox('WaitingLongest', 'first: 20, orderBy: WAITING_LONGEST', ' waitingSince');

export const GATEWAY_QC = `query Counts {
  conversationCounts { all open pending snoozed resolved unread unassigned mine waiting }
}`;

export const GATEWAY_Q2 = `query Thread($phoneNumber: String!, $after: String) {
  conversation(phoneNumber: $phoneNumber) {
    id phoneNumber
    messages(first: 50, after: $after) {
      edges { cursor node { id direction body mediaUrls status sentiment segments createdAt } }
      pageInfo { hasNextPage endCursor }
    }
  }
}`;

// PostGraphile's names for the same data (relations named after their foreign keys).
export const POSTGRAPHILE_Q1 = `query Inbox($org: UUID!) {
  conversations: allConversations(first: 20, condition: { organizationId: $org, isArchived: false }, orderBy: [LAST_MESSAGE_AT_DESC, ROW_ID_DESC]) {
    edges {
      cursor
      node {
        id phoneNumber unreadCount lastMessageAt
        contact: contactByOrganizationIdAndContactId { id firstName lastName }
        lastMessage { id direction body createdAt }
        messages: messagesByOrganizationIdAndConversationId(first: 5, orderBy: [CREATED_AT_DESC, ROW_ID_DESC]) {
          edges { node { id direction body status createdAt } }
        }
      }
    }
    pageInfo { hasNextPage endCursor }
  }
}`;

export const POSTGRAPHILE_Q2 = `query Thread($org: UUID!, $phoneNumber: String!, $after: Cursor, $offset: Int, $first: Int = 50) {
  conversation: conversationByOrganizationIdAndPhoneNumber(organizationId: $org, phoneNumber: $phoneNumber) {
    id phoneNumber
    messages: messagesByOrganizationIdAndConversationId(first: $first, after: $after, offset: $offset, orderBy: [CREATED_AT_DESC, ROW_ID_DESC]) {
      edges { cursor node { id direction body mediaUrls status sentiment segments createdAt } }
      pageInfo { hasNextPage endCursor }
    }
  }
}`;

const graphql = (query: string, variables: Record<string, unknown>, headers: Record<string, string>): HttpRequest => ({
  method: 'POST',
  path: '/graphql',
  headers: { ...headers, 'content-type': 'application/json', accept: 'application/json' },
  body: JSON.stringify({ query, variables }),
});

export const GATEWAY_Q4 = `mutation Reply($input: SendReplyInput!) {
  sendReply(input: $input) {
    __typename
    ... on SendReplyPayload { segments creditsCharged message { id status createdAt } }
    ... on Error { error: message }
  }
}`;

/**
 * sendReply to each (organization, contact) in turn, as many teams' replies would arrive: one hot
 * conversation or one organization would only measure its row lock (credits are reserved per organization).
 */
function replies(writer: NonNullable<ScenarioContext['writer']>): HttpRequest {
  let sequence = 0;
  const next = () => {
    const target = writer.targets[sequence++ % writer.targets.length]!;
    const input = { phoneNumber: target.contactPhone, message: 'Thanks! Doors open at 5:30, see you Thursday.' };
    return {
      body: JSON.stringify({ query: GATEWAY_Q4, variables: { input } }),
      headers: {
        authorization: `Bearer ${target.apiToken}`,
        'x-organization-id': target.organizationId,
        'content-type': 'application/json',
        accept: 'application/json',
      },
    };
  };
  return { method: 'POST', path: '/graphql', ...next(), next };
}

type Writer = NonNullable<ScenarioContext['writer']>;
type WriterTarget = Writer['targets'][number];

export const INBOUND_WEBHOOK_PATH = '/webhooks/twilio/messages';

/**
 * Signed inbound webhooks as Twilio sends them, each with a new MessageSid (unique per run): from the
 * target's contact to its organization's number.
 */
export function inboundWebhooks(writer: Writer) {
  const run = Date.now().toString(16);
  let sequence = 0;
  return (target: WriterTarget, body: string) => {
    sequence += 1;
    const params = {
      MessageSid: `SM${run}${String(sequence).padStart(32 - run.length, '0')}`,
      AccountSid: 'AC00000000000000000000000000000000',
      From: target.contactPhone,
      To: target.sendingNumber,
      Body: body,
      NumMedia: '0',
    };
    return {
      body: new URLSearchParams(params).toString(),
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        'x-twilio-signature': writer.sign(writer.twilioAuthToken, writer.publicBaseUrl + INBOUND_WEBHOOK_PATH, params),
      },
    };
  };
}

/** Inbound texts from each (organization, contact) in turn. */
function inboundWebhook(writer: Writer): HttpRequest {
  const webhook = inboundWebhooks(writer);
  let turn = 0;
  const next = () => webhook(writer.targets[turn++ % writer.targets.length]!, 'Thanks, see you there!');
  return { method: 'POST', path: INBOUND_WEBHOOK_PATH, ...next(), next };
}

export function requestFor(server: ServerId, scenario: ScenarioId, ctx: ScenarioContext): HttpRequest | null {
  const auth = { authorization: `Bearer ${ctx.apiToken}`, 'x-organization-id': ctx.organizationId };
  const phone = encodeURIComponent(ctx.phoneNumber);
  switch (server) {
    case 'gateway':
      if (TEAM_SCENARIOS.includes(scenario)) {
        if (!ctx.agentToken) return null;
        const agent = { authorization: `Bearer ${ctx.agentToken}`, 'x-organization-id': ctx.organizationId };
        return graphql(scenario === 'Q1M' ? GATEWAY_Q1M : scenario === 'Q1W' ? GATEWAY_Q1W : GATEWAY_QC, {}, agent);
      }
      if (scenario === 'Q1') return graphql(GATEWAY_Q1, {}, auth);
      if (scenario === 'Q2') return graphql(GATEWAY_Q2, { phoneNumber: ctx.phoneNumber }, auth);
      if (scenario === 'Q3') return graphql(GATEWAY_Q2, { phoneNumber: ctx.phoneNumber, after: ctx.deepCursor }, auth);
      if (scenario === 'REST') return { method: 'GET', path: `/api/conversations/${phone}/messages?limit=50`, headers: auth };
      if (!ctx.writer) return null;
      if (scenario === 'Q4') return replies(ctx.writer);
      return inboundWebhook(ctx.writer);
    case 'floor':
    case 'pgjson':
      if (GATEWAY_ONLY_SCENARIOS.includes(scenario)) return null;
      if (scenario === 'Q1') return { method: 'GET', path: '/q1?first=20', headers: auth };
      if (scenario === 'Q2') return { method: 'GET', path: `/q2?phoneNumber=${phone}&first=50`, headers: auth };
      if (scenario === 'Q3') return { method: 'GET', path: `/q2?phoneNumber=${phone}&first=50&after=${ctx.deepCursor}`, headers: auth };
      // The floors serve the REST route on the gateway's own path.
      if (scenario === 'REST') return { method: 'GET', path: `/api/conversations/${phone}/messages?limit=50`, headers: auth };
      return null;
    case 'postgraphile':
      // PostGraphile has no tenant auth of its own here; the organization is an argument.
      if (GATEWAY_ONLY_SCENARIOS.includes(scenario)) return null;
      if (scenario === 'Q1') return graphql(POSTGRAPHILE_Q1, { org: ctx.organizationId }, {});
      if (scenario === 'Q2') return graphql(POSTGRAPHILE_Q2, { org: ctx.organizationId, phoneNumber: ctx.phoneNumber }, {});
      if (scenario === 'Q3' && ctx.postgraphileDeepCursor) {
        return graphql(POSTGRAPHILE_Q2, { org: ctx.organizationId, phoneNumber: ctx.phoneNumber, after: ctx.postgraphileDeepCursor }, {});
      }
      return null;
  }
}
