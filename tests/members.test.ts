import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp, type TestOrg } from './helpers/app.js';
import { connectWs, subscribeWs, until } from './helpers/realtime.js';

// People and roles over real HTTP and WebSocket: users, memberships, user tokens, role checks that
// change nothing when they refuse, the one-OWNER rule, and the audit log.

let t: TestApp;
beforeAll(async () => {
  t = await createTestApp();
}, 60_000);
afterAll(() => t?.close());

const VIEWER = `{ viewer { role user { email name } organizations { id name } } }`;
const MEMBERS = `{ organization { members { role user { uuid email } } } }`;
const ADD = `mutation($input: AddMemberInput!) { addMember(input: $input) { role user { uuid email name } } }`;
const SET_ROLE = `mutation($userId: ID!, $role: MemberRole!) { setMemberRole(userId: $userId, role: $role) { role user { uuid } } }`;
const REMOVE = `mutation($userId: ID!) { removeMember(userId: $userId) { role user { uuid } } }`;
const CREATE_TOKEN = `mutation($input: CreateApiTokenInput!) { createApiToken(input: $input) { token apiToken { uuid isIntegration user { uuid } } } }`;
const REVOKE_TOKEN = `mutation($id: ID!) { revokeApiToken(id: $id) { uuid revokedAt } }`;

let seq = 0;
const email = (name: string) => `${name}.${++seq}@team.example.com`;

async function team(name = 'Team') {
  const org = await t.createOrg(name, { phoneNumber: undefined });
  const owner = await t.addMember(org, { email: email('owner'), name: 'Olive Owner', role: 'owner' });
  const admin = await t.addMember(org, { email: email('admin'), name: 'Adam Admin', role: 'admin' });
  const agent = await t.addMember(org, { email: email('agent'), name: 'Aggie Agent', role: 'agent' });
  return { org, owner, admin, agent };
}

const as = (who: TestOrg, headers: Record<string, string> = {}) => ({
  headers: { authorization: `Bearer ${who.apiToken}`, 'x-organization-id': who.organizationId, ...headers },
});
const tokenOnly = (who: TestOrg) => ({ headers: { authorization: `Bearer ${who.apiToken}` } });

async function memberEmails(org: TestOrg) {
  const res = await t.graphql(MEMBERS, {}, org);
  expect(res.body.errors).toBeUndefined();
  return res.body.data.organization.members.map((m: any) => `${m.user.email}:${m.role}`).sort();
}

describe('the viewer', () => {
  it('is INTEGRATION with no user for an organization token, and the member with their role for a user token', async () => {
    const { org, owner, agent } = await team();
    const integration = await t.graphql(VIEWER, {}, org);
    expect(integration.body.data.viewer).toEqual({ role: 'INTEGRATION', user: null, organizations: [{ id: expect.any(String), name: 'Team' }] });

    const asOwner = await t.graphql(VIEWER, {}, as(owner));
    expect(asOwner.body.data.viewer).toMatchObject({ role: 'OWNER', user: { email: owner.email, name: 'Olive Owner' } });
    const asAgent = await t.graphql(VIEWER, {}, tokenOnly(agent));
    expect(asAgent.body.data.viewer).toMatchObject({ role: 'AGENT', user: { email: agent.email } });
  });

  it('a user in several organizations picks one with x-organization-id; without it, ORGANIZATION_REQUIRED on GraphQL and REST', async () => {
    const a = await t.createOrg('Org A');
    const b = await t.createOrg('Org B');
    const outsider = await t.createOrg('Org C');
    const address = email('both');
    const inA = await t.addMember(a, { email: address, role: 'admin' }, { anyOrganization: true });
    // The same person (email compared case-insensitively) added to B.
    const inB = await t.addMember(b, { email: address.toUpperCase(), role: 'agent' });
    expect(inB.userId).toBe(inA.userId);

    const missing = await t.graphql(VIEWER, {}, tokenOnly(inA));
    expect(missing.status).toBe(400);
    expect(missing.body.errors?.[0]?.extensions).toMatchObject({ code: 'BAD_USER_INPUT', errorCode: 'ORGANIZATION_REQUIRED' });
    const rest = await fetch(`${t.url}/api/conversations`, tokenOnly(inA));
    expect(rest.status).toBe(400);
    expect(await rest.json()).toMatchObject({ success: false, code: 'ORGANIZATION_REQUIRED' });

    const inOrgA = await t.graphql(VIEWER, {}, as(inA));
    expect(inOrgA.body.data.viewer.role).toBe('ADMIN');
    expect(inOrgA.body.data.viewer.organizations.map((o: any) => o.name).sort()).toEqual(['Org A', 'Org B']);
    const inOrgB = await t.graphql(VIEWER, {}, as({ ...inA, organizationId: b.organizationId }));
    expect(inOrgB.body.data.viewer.role).toBe('AGENT');

    // An organization the user does not belong to: 403 FORBIDDEN, as for any token.
    const foreign = await t.graphql(VIEWER, {}, as({ ...inA, organizationId: outsider.organizationId }));
    expect(foreign.status).toBe(403);
    expect(foreign.body.errors?.[0]?.extensions?.code).toBe('FORBIDDEN');
    const foreignRest = await fetch(`${t.url}/api/conversations`, as({ ...inA, organizationId: outsider.organizationId }));
    expect(foreignRest.status).toBe(403);
    expect(await foreignRest.json()).toMatchObject({ code: 'FORBIDDEN' });

    // Another organization's details are not shown through viewer.organizations.
    const details = await t.graphql(`{ viewer { organizations { name credits } } }`, {}, as(inA));
    expect(details.body.errors?.[0]?.extensions?.code).toBe('FORBIDDEN');
  });

  it('a token made in one organization acts only there, even for a user of several', async () => {
    const a = await t.createOrg('Only A');
    const b = await t.createOrg('Also B');
    const address = email('limited');
    const inA = await t.addMember(a, { email: address, role: 'agent' });
    await t.addMember(b, { email: address, role: 'agent' });
    // No ORGANIZATION_REQUIRED: the token names its organization.
    const viewer = await t.graphql(VIEWER, {}, tokenOnly(inA));
    expect(viewer.body.data.viewer.organizations.map((o: any) => o.name)).toEqual(['Only A']);
    const other = await t.graphql(VIEWER, {}, as({ ...inA, organizationId: b.organizationId }));
    expect(other.status).toBe(403);
  });
});

describe('members', () => {
  it('ADMIN adds AGENTs and ADMINs (creating the user when the email is new); an existing user keeps their name', async () => {
    const { org, admin, owner } = await team();
    const newcomer = email('new');
    const added = await t.graphql(ADD, { input: { email: newcomer, name: 'New Person', role: 'AGENT' } }, as(admin));
    expect(added.body.data.addMember).toMatchObject({ role: 'AGENT', user: { email: newcomer, name: 'New Person' } });

    const elsewhere = await team('Elsewhere');
    const again = await t.graphql(ADD, { input: { email: newcomer.toUpperCase(), name: 'Renamed', role: 'ADMIN' } }, as(elsewhere.owner));
    expect(again.body.data.addMember.user).toEqual(added.body.data.addMember.user);

    const duplicate = await t.graphql(ADD, { input: { email: owner.email, role: 'AGENT' } }, as(admin));
    expect(duplicate.body.errors?.[0]?.extensions).toMatchObject({ code: 'BAD_USER_INPUT', errorCode: 'MEMBER_ALREADY_EXISTS' });
    const badEmail = await t.graphql(ADD, { input: { email: 'not an email', role: 'AGENT' } }, as(admin));
    expect(badEmail.body.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
    expect(await memberEmails(org)).toContain(`${newcomer}:AGENT`);
  });

  it('refuses, changing nothing: an AGENT managing members, an ADMIN granting or touching OWNER', async () => {
    const { org, owner, admin, agent } = await team();
    const before = await memberEmails(org);
    const refusals = [
      await t.graphql(ADD, { input: { email: email('x'), role: 'AGENT' } }, as(agent)),
      await t.graphql(SET_ROLE, { userId: admin.userId, role: 'AGENT' }, as(agent)),
      await t.graphql(REMOVE, { userId: admin.userId }, as(agent)),
      await t.graphql(ADD, { input: { email: email('y'), role: 'OWNER' } }, as(admin)),
      await t.graphql(SET_ROLE, { userId: agent.userId, role: 'OWNER' }, as(admin)),
      await t.graphql(SET_ROLE, { userId: owner.userId, role: 'AGENT' }, as(admin)),
      await t.graphql(REMOVE, { userId: owner.userId }, as(admin)),
      // An integration token has ADMIN's rights, not OWNER's.
      await t.graphql(REMOVE, { userId: owner.userId }, org),
    ];
    for (const res of refusals) {
      expect(res.status).toBe(200);
      expect(res.body.errors?.[0]?.extensions?.code).toBe('FORBIDDEN');
    }
    expect(await memberEmails(org)).toEqual(before);
    const audit = await t.graphql(`{ organization { auditEvents(first: 50) { edges { node { action } } } } }`, {}, as(owner));
    expect(audit.body.data.organization.auditEvents.edges.map((e: any) => e.node.action)).toEqual(['member.added', 'member.added', 'member.added']);
  });

  it('keeps one OWNER: the last cannot leave or step down, and two owners demoting each other at once leave one', async () => {
    const { org, owner } = await team();
    const alone = await t.graphql(SET_ROLE, { userId: owner.userId, role: 'ADMIN' }, as(owner));
    expect(alone.body.errors?.[0]?.extensions).toMatchObject({ code: 'BAD_USER_INPUT', errorCode: 'LAST_OWNER' });
    const leave = await t.graphql(REMOVE, { userId: owner.userId }, as(owner));
    expect(leave.body.errors?.[0]?.extensions?.errorCode).toBe('LAST_OWNER');

    const second = await t.addMember(org, { email: email('owner2'), role: 'owner' });
    const [one, two] = await Promise.all([
      t.graphql(SET_ROLE, { userId: second.userId, role: 'ADMIN' }, as(owner)),
      t.graphql(SET_ROLE, { userId: owner.userId, role: 'ADMIN' }, as(second)),
    ]);
    const succeeded = [one, two].filter((res) => !res.body.errors);
    expect(succeeded).toHaveLength(1);
    const owners = (await memberEmails(org)).filter((entry: string) => entry.endsWith(':OWNER'));
    expect(owners).toHaveLength(1);
  });

  it('a new role applies at once, on every request of that user', async () => {
    const { admin, agent } = await team();
    const before = await t.graphql(ADD, { input: { email: email('z'), role: 'AGENT' } }, as(agent));
    expect(before.body.errors?.[0]?.extensions?.code).toBe('FORBIDDEN');
    expect((await t.graphql(SET_ROLE, { userId: agent.userId, role: 'ADMIN' }, as(admin))).body.errors).toBeUndefined();
    const after = await t.graphql(ADD, { input: { email: email('z'), role: 'AGENT' } }, as(agent));
    expect(after.body.errors).toBeUndefined();
    expect((await t.graphql(VIEWER, {}, as(agent))).body.data.viewer.role).toBe('ADMIN');
  });

  it('removing a member unassigns their conversations, ends their access here, and closes their WebSockets', async () => {
    const org = await t.createOrg('Removal', { phoneNumber: '+19195550301' });
    const owner = await t.addMember(org, { email: email('o'), role: 'owner' });
    const agent = await t.addMember(org, { email: email('a'), role: 'agent' });
    await t.createContact(org, { phoneNumber: '+19195550302', firstName: 'Pat' });
    await t.addMessage(org, { phoneNumber: '+19195550302', direction: 'incoming', body: 'hello' });
    const assigned = await t.graphql(
      `mutation($id: ID!) { assignConversation(phoneNumber: "+19195550302", userId: $id) { assignee { uuid } } }`,
      { id: agent.userId },
      as(owner),
    );
    expect(assigned.body.data.assignConversation.assignee.uuid).toBe(agent.userId);

    const socket = connectWs(t.url, agent, { retryAttempts: 0 });
    const live = subscribeWs(socket, `subscription { conversationUpdated { id } }`);
    await until(() => t.deps.events.subscriberCount('conversationUpdated', org.organizationId) > 0, 10_000, 'subscriber');

    const removed = await t.graphql(REMOVE, { userId: agent.userId }, as(owner));
    expect(removed.body.data.removeMember).toEqual({ role: 'AGENT', user: { uuid: agent.userId } });
    const conversation = await t.graphql(`{ conversation(phoneNumber: "+19195550302") { assignee { uuid } } }`, {}, as(owner));
    expect(conversation.body.data.conversation.assignee).toBeNull();

    const denied = await t.graphql(VIEWER, {}, as(agent));
    expect([401, 403]).toContain(denied.status);
    await until(() => socket.closes.length > 0, 10_000, 'the socket to close');
    expect([4401, 4403]).toContain(socket.closes[0]!.code);
    live.unsubscribe();
    await socket.client.dispose();
  });
});

describe('API tokens', () => {
  it('an AGENT makes a token for itself only; ADMIN makes integration tokens and tokens for members', async () => {
    const { org, admin, agent } = await team();
    const own = await t.graphql(CREATE_TOKEN, { input: { userId: agent.userId, name: 'laptop' } }, as(agent));
    expect(own.body.data.createApiToken).toMatchObject({ token: expect.stringMatching(/^cgw_/), apiToken: { isIntegration: false, user: { uuid: agent.userId } } });
    const viaNew = await t.graphql(VIEWER, {}, tokenOnly({ ...agent, apiToken: own.body.data.createApiToken.token }));
    expect(viaNew.body.data.viewer).toMatchObject({ role: 'AGENT', user: { email: agent.email } });

    for (const input of [{ userId: admin.userId }, {}]) {
      const refused = await t.graphql(CREATE_TOKEN, { input }, as(agent));
      expect(refused.body.errors?.[0]?.extensions?.code).toBe('FORBIDDEN');
    }
    const integration = await t.graphql(CREATE_TOKEN, { input: { name: 'crm' } }, as(admin));
    expect(integration.body.data.createApiToken.apiToken).toMatchObject({ isIntegration: true, user: null });
    const forAgent = await t.graphql(CREATE_TOKEN, { input: { userId: agent.userId } }, as(admin));
    expect(forAgent.body.data.createApiToken.apiToken.user.uuid).toBe(agent.userId);
    const notMember = await t.graphql(CREATE_TOKEN, { input: { userId: '00000000-0000-4000-8000-000000000000' } }, as(admin));
    expect(notMember.body.errors?.[0]?.extensions?.errorCode).toBe('MEMBER_NOT_FOUND');

    // An AGENT lists its own tokens; ADMIN all of them.
    const agentList = await t.graphql(`{ organization { apiTokens { uuid user { uuid } } } }`, {}, as(agent));
    expect(agentList.body.data.organization.apiTokens.every((token: any) => token.user?.uuid === agent.userId)).toBe(true);
    const adminList = await t.graphql(`{ organization { apiTokens { uuid isIntegration } } }`, {}, as(admin));
    expect(adminList.body.data.organization.apiTokens.length).toBeGreaterThan(agentList.body.data.organization.apiTokens.length);

    // Revoking: an AGENT cannot revoke the integration token (not found to it), ADMIN can; the token then stops working.
    const crmId = integration.body.data.createApiToken.apiToken.uuid;
    const hidden = await t.graphql(REVOKE_TOKEN, { id: crmId }, as(agent));
    expect(hidden.body.errors?.[0]?.extensions?.code).toBe('NOT_FOUND');
    const crm = { organizationId: org.organizationId, apiToken: integration.body.data.createApiToken.token };
    expect((await t.graphql(VIEWER, {}, crm)).status).toBe(200);
    const revoked = await t.graphql(REVOKE_TOKEN, { id: crmId }, as(admin));
    expect(revoked.body.data.revokeApiToken.revokedAt).toEqual(expect.any(String));
    await until(async () => (await t.graphql(VIEWER, {}, crm)).status === 401, 5_000, 'the revoked token to be refused');
  });
});

describe('the audit log', () => {
  it('records who changed members and tokens, newest first with keyset cursors, for ADMIN and OWNER only', async () => {
    const { owner, admin, agent } = await team();
    await t.graphql(SET_ROLE, { userId: agent.userId, role: 'ADMIN' }, as(owner));
    await t.graphql(SET_ROLE, { userId: agent.userId, role: 'AGENT' }, as(admin));
    await t.graphql(CREATE_TOKEN, { input: { name: 'ops' } }, as(admin));

    const denied = await t.graphql(`{ organization { name auditEvents { edges { node { action } } } } }`, {}, as(agent));
    expect(denied.body.errors?.[0]?.extensions?.code).toBe('FORBIDDEN');
    expect(denied.status).toBe(200);

    const PAGE = `query($after: String) { organization { auditEvents(first: 2, after: $after) {
      edges { node { action actorKind actor { uuid } objectType objectId data } } pageInfo { hasNextPage endCursor } } } }`;
    const seen: any[] = [];
    let after: string | null = null;
    for (;;) {
      const page: any = await t.graphql(PAGE, { after }, as(owner));
      expect(page.body.errors).toBeUndefined();
      seen.push(...page.body.data.organization.auditEvents.edges.map((e: any) => e.node));
      if (!page.body.data.organization.auditEvents.pageInfo.hasNextPage) break;
      after = page.body.data.organization.auditEvents.pageInfo.endCursor;
    }
    expect(seen.map((e) => e.action)).toEqual(['token.created', 'member.role_changed', 'member.role_changed', 'member.added', 'member.added', 'member.added']);
    expect(seen[0]).toMatchObject({ actorKind: 'USER', actor: { uuid: admin.userId }, objectType: 'api_token', data: { name: 'ops', userId: null } });
    expect(seen[1]).toMatchObject({ actor: { uuid: admin.userId }, objectId: agent.userId, data: { from: 'admin', to: 'agent' } });
    expect(seen[2]).toMatchObject({ actor: { uuid: owner.userId }, data: { from: 'agent', to: 'admin' } });
    expect(seen[5]).toMatchObject({ actorKind: 'OPERATOR', actor: null });

    const foreign = await team('Other');
    const forged = await t.graphql(PAGE, { after }, as(foreign.owner));
    expect(forged.body.errors?.[0]?.extensions?.errorCode).toBe('INVALID_CURSOR');
  });
});

