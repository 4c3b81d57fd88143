import { isDeepStrictEqual } from 'node:util';
import type { Sql } from 'postgres';
import type { ScenarioId } from './scenarios.js';

// What the team inbox scenarios (Q1M, Q1W, QC) must answer, read from the database with plain SQL written
// here, not with the gateway's statements: a fast wrong answer is no result. Archived conversations are
// hidden, as the gateway's filter hides them by default.

type Reader = { organizationId: string; agentUserId: string };

const PAGE = 20;

/** Checks the gateway's answer to a team scenario; returns the line for the report's checks, throws on a difference. */
export async function checkTeamAnswer(sql: Sql, scenario: ScenarioId, reader: Reader, body: any): Promise<string> {
  const org = reader.organizationId;
  const agent = reader.agentUserId;
  const fail = (what: string) => {
    throw new Error(`${scenario}: ${what}; the gateway answered ${JSON.stringify(body).slice(0, 300)}`);
  };

  if (scenario === 'QC') {
    const [row] = await sql`
      select count(*)::int as "all",
             count(*) filter (where status = 'open')::int as open,
             count(*) filter (where status = 'pending')::int as pending,
             count(*) filter (where status = 'snoozed')::int as snoozed,
             count(*) filter (where status = 'resolved')::int as resolved,
             count(*) filter (where unread_count > 0)::int as unread,
             count(*) filter (where assignee_user_id is null)::int as unassigned,
             count(*) filter (where assignee_user_id = ${agent})::int as mine,
             count(*) filter (where waiting_since is not null)::int as waiting
      from conversations where organization_id = ${org} and not is_archived`;
    const expected = { ...row };
    const got = body?.data?.conversationCounts;
    if (!isDeepStrictEqual(got, expected)) fail(`counts differ from SQL's ${JSON.stringify(expected)}`);
    if (expected.mine === 0 || expected.waiting === 0) fail('the dataset gives the agent nothing to count (mine or waiting is 0)');
    return `QC: conversationCounts equals the counts SQL makes (${Object.entries(expected).map(([key, n]) => `${key} ${n}`).join(', ')})`;
  }

  const edges: any[] = body?.data?.conversations?.edges ?? [];
  const hasNextPage = body?.data?.conversations?.pageInfo?.hasNextPage;
  const answered = edges.map((edge) => [edge.node.phoneNumber, scenario === 'Q1W' ? isoOrNull(edge.node.waitingSince) : edge.node.status]);

  if (scenario === 'Q1M') {
    const rows = await sql`
      select phone_number, count(*) over ()::int as total from conversations
      where organization_id = ${org} and not is_archived and assignee_user_id = ${agent} and status = 'open'
      order by last_message_at desc, id desc`;
    if (rows.length === 0) fail('the dataset gives the agent no open conversation, so the filter is not tested');
    const expected = rows.slice(0, PAGE).map((row) => [row.phone_number, 'OPEN']);
    if (!isDeepStrictEqual(answered, expected) || hasNextPage !== rows.length > PAGE) {
      fail(`expected the agent's open conversations ${JSON.stringify(expected.map(([phone]) => phone))} (hasNextPage ${rows.length > PAGE})`);
    }
    return `Q1M: the agent's ${expected.length} open conversations (of ${rows.length}), in the order SQL gives, all OPEN`;
  }

  if (scenario === 'Q1W') {
    // Waiting ones first, longest wait first (then id); then the others, most recent activity first.
    const rows = await sql`
      select phone_number, waiting_since, count(*) filter (where waiting_since is not null) over ()::int as waiting
      from conversations
      where organization_id = ${org} and not is_archived
      order by waiting_since is null, waiting_since, case when waiting_since is not null then id end,
               last_message_at desc, id desc
      limit ${PAGE + 1}`;
    const waiting = rows[0]?.waiting ?? 0;
    if (waiting === 0) fail('the dataset has no waiting conversation, so the order is not tested');
    const expected = rows.slice(0, PAGE).map((row) => [row.phone_number, isoOrNull(row.waiting_since)]);
    if (!isDeepStrictEqual(answered, expected) || hasNextPage !== rows.length > PAGE) {
      fail(`expected ${JSON.stringify(expected)} (hasNextPage ${rows.length > PAGE})`);
    }
    const shown = expected.filter(([, since]) => since !== null).length;
    return `Q1W: the ${expected.length} conversations SQL puts first by longest wait (${shown} of them waiting, of ${waiting}), same order and waitingSince`;
  }
  throw new Error(`${scenario} is not a team scenario`);
}

const isoOrNull = (value: unknown) => (value === null || value === undefined ? null : new Date(value as string | Date).toISOString());
