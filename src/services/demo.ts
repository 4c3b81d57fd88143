import { en, Faker } from '@faker-js/faker';
import type { Db } from '../db/client.js';
import { consentEvents, contacts, conversations, messages, phoneNumbers, type ConversationStatusValue, type MemberRoleValue } from '../db/tables.js';
import { operatorCaller } from './access.js';
import { analysisColumns, analyzeInbound } from './analysis.js';
import { issueApiToken } from './api-tokens.js';
import { addMember } from './members.js';
import { createOrganization } from './organizations.js';
import { parsePhone } from './phone.js';

// A deterministic demo inbox: the same seed gives the same contacts, threads and texts. Times are laid
// out backwards from `now` (default: the start of the current hour), so the inbox always looks recent.

export type DemoOptions = { contacts?: number; messages?: number; seed?: number; now?: Date; credits?: number };
export type DemoResult = {
  organizationId: string;
  /** The OWNER's token (acts as the demo's owner). */
  apiToken: string;
  /** The organization's integration token. */
  integrationToken: string;
  phoneNumber: string;
  contacts: number;
  messages: number;
  /** The team: an OWNER and two AGENTs. */
  team: { userId: string; name: string; email: string; role: MemberRoleValue }[];
};

/** The demo's team; emails get the organization's id, so every demo organization has its own people. */
const TEAM = [
  { name: 'Dana Whitfield', role: 'owner' },
  { name: 'Sam Ortiz', role: 'agent' },
  { name: 'Priya Raman', role: 'agent' },
] as const;

const AREA_CODES = ['919', '212', '415', '512', '617', '704', '312', '206', '303', '404', '305', '614'];

const OPENERS = [
  'Hi {first}, this is {org}. Are you still able to make it to the community meeting on Thursday at 6pm?',
  "Hi {first}! It's {org}. We're looking for volunteers this Saturday, can you help out for a couple of hours?",
  'Hello {first}, {org} here. Early voting starts Monday, polls are open 8am–7pm. Do you have a plan to vote?',
  'Hi {first}, your appointment with {org} is confirmed for tomorrow at 10:30. Reply if you need to reschedule.',
  "Hey {first}, thanks for signing up with {org}! Here's what's coming up: https://example.org/events",
];
const OUTBOUND = [
  "Thanks {first}! We'll save you a seat.",
  "Here's the sign-up link: https://example.org/volunteer",
  "Got it, I've updated your details.",
  "We're sorry to hear that. Someone from our team will call you today.",
  'Could you share a good time to talk this week?',
  'Great news — your application was approved! 🎉',
  'Parking is free in the lot behind the building.',
  'Doors open at 5:30, the program starts at 6.',
  'Of course, friends and family are welcome!',
  "No problem at all, we'll catch you next time.",
  'Here is the agenda: https://example.org/agenda.pdf',
  'Just checking in, did you get the packet we mailed?',
  'You’re all set. See you soon!',
];
const INBOUND = [
  "Yes I'll be there!",
  'What time does it start?',
  'Can I bring a friend?',
  'Sounds great, see you there!',
  'ok thanks',
  'Who is this?',
  'I moved, my new address is 42 Oak St',
  "This is the third time I've asked and nobody called me back. Really frustrating.",
  'Thank you so much, this was really helpful 🙏',
  'Running 10 min late',
  'Is parking available?',
  '👍',
  'Not this week, sorry',
  'Where do I sign up?',
  'Love it!',
  'Can you send me the link again?',
  'Please call me after 5',
  "I'm not happy with how this was handled.",
  'Perfect, thank you!',
  'Do you have anything in Spanish?',
  'Here is a photo of the flyer',
];
const FAILED_CODES = [30003, 30006];

/** Creates a new demo organization (each call another one) with a default number and a varied inbox. */
export async function createDemoOrganization(db: Db, options: DemoOptions = {}): Promise<DemoResult> {
  const contactCount = Math.max(5, options.contacts ?? 25);
  const messageTarget = Math.max(contactCount * 2, options.messages ?? 400);
  const faker = new Faker({ locale: [en] });
  faker.seed(options.seed ?? 42);
  const now = options.now ?? new Date(Math.floor(Date.now() / 3_600_000) * 3_600_000);

  const orgName = `${faker.company.name()} (demo)`;
  const { organizationId, apiToken: integrationToken } = await createOrganization(db, {
    name: orgName,
    credits: options.credits ?? 1000,
    timezone: 'America/New_York',
  });
  const orgShort = orgName.split(/[ ,]/)[0]!;
  const team: DemoResult['team'] = [];
  for (const person of TEAM) {
    const email = `${person.name.toLowerCase().replace(' ', '.')}+${organizationId.slice(0, 8)}@example.com`;
    const member = await addMember({ db }, operatorCaller(organizationId), { email, name: person.name, role: person.role });
    team.push({ userId: member.user.id, name: person.name, email, role: person.role });
  }
  // The owner's token acts as the owner (an operator-made user token).
  const { apiToken } = await issueApiToken(db, organizationId, { name: 'demo owner', userId: team[0]!.userId, anyOrganization: true });

  const phoneOf = (lastDigitNot0: boolean) => {
    for (;;) {
      const area = faker.helpers.arrayElement(AREA_CODES);
      let line = faker.string.numeric(4);
      if (lastDigitNot0 && line.endsWith('0')) line = `${line.slice(0, 3)}${faker.number.int({ min: 1, max: 9 })}`;
      const e164 = parsePhone(`+1${area}555${line}`);
      if (e164) return e164;
    }
  };

  // The sending number is global (inbound routing), so retry until one is free. Its own generator keeps
  // the inbox identical whatever numbers earlier demos took.
  const numberFaker = new Faker({ locale: [en] });
  numberFaker.seed((options.seed ?? 42) + 1);
  let sendingNumber = '';
  for (let attempt = 0; !sendingNumber; attempt += 1) {
    // Exchange 556 for sending numbers, 555 for contacts: a contact never has the organization's own number.
    const candidate = parsePhone(`+1${numberFaker.helpers.arrayElement(AREA_CODES)}556${numberFaker.string.numeric(4)}`);
    if (!candidate) continue;
    const inserted = await db
      .insert(phoneNumbers)
      .values({ organizationId, phoneNumber: candidate, isDefault: true })
      .onConflictDoNothing()
      .returning({ id: phoneNumbers.id });
    if (inserted.length > 0) sendingNumber = candidate;
    if (attempt > 1000) throw new Error('could not find a free demo sending number');
  }

  // Contacts: all have names; the last three have no conversation (non-textable, pending, opted out).
  const usedPhones = new Set<string>();
  const contactRows = Array.from({ length: contactCount }, (_, index) => {
    let phone = phoneOf(true);
    while (usedPhones.has(phone)) phone = phoneOf(true);
    usedPhones.add(phone);
    const special = index - (contactCount - 3);
    return {
      organizationId,
      id: faker.string.uuid(),
      phoneNumber: special === 0 ? `${phone.slice(0, -1)}0` : phone,
      firstName: faker.person.firstName(),
      lastName: faker.person.lastName(),
      isTextable: special === 0 ? false : special === 1 ? null : true,
      isOptedIn: special !== 2,
      createdAt: new Date(now.getTime() - 40 * 86_400_000),
    };
  });
  const threads = contactRows.slice(0, contactCount - 3);
  // Lengths: the first thread is long (at least 40), the rest share the remaining target unevenly.
  const longest = Math.max(40, Math.floor(messageTarget * 0.15));
  const weights = threads.slice(1).map(() => faker.number.float({ min: 0.2, max: 3 }));
  const weightSum = weights.reduce((a, b) => a + b, 0);
  const lengths = [longest, ...weights.map((w) => Math.max(2, Math.round(((messageTarget - longest) * w) / weightSum)))];

  const conversationRows: (typeof conversations.$inferInsert)[] = [];
  const messageRows: (typeof messages.$inferInsert)[] = [];
  const consentRows: (typeof consentEvents.$inferInsert)[] = [];
  const stopThread = threads.length > 4 ? threads.length - 1 : -1;

  threads.forEach((contact, index) => {
    const conversationId = faker.string.uuid();
    const length = lengths[index]!;
    // Most recent activity: spread over the last two weeks, newest threads first.
    let at = now.getTime() - index * faker.number.int({ min: 20, max: 90 }) * 60_000 - faker.number.int({ min: 0, max: 3_600_000 });
    const thread: (typeof messages.$inferInsert)[] = [];
    const fill = (template: string) => template.replaceAll('{first}', contact.firstName).replaceAll('{org}', orgShort);
    // Build newest to oldest, then reverse: the thread ends as this conversation's state says.
    const endsInbound = index % 3 !== 2;
    for (let i = 0; i < length; i += 1) {
      const isLast = i === 0;
      const isFirst = i === length - 1;
      const direction: 'incoming' | 'outgoing' = isFirst
        ? 'outgoing'
        : isLast
          ? endsInbound ? 'incoming' : 'outgoing'
          : faker.datatype.boolean({ probability: 0.5 }) ? 'incoming' : 'outgoing';
      const id = faker.string.uuid();
      const createdAt = new Date(at);
      at -= faker.number.int({ min: 1, max: 240 }) * 60_000 + faker.number.int({ min: 0, max: 59_999 });
      if (direction === 'incoming') {
        const body = index === stopThread && isLast ? 'STOP' : faker.helpers.arrayElement(INBOUND);
        const analysis = analyzeInbound(body);
        thread.push({
          organizationId,
          id,
          conversationId,
          direction,
          body,
          mediaUrls: body.includes('photo') ? [`https://picsum.photos/seed/${id.slice(0, 8)}/600/400`] : [],
          providerMessageId: `SM${id.replaceAll('-', '')}`,
          provider: 'twilio',
          ...analysisColumns(analysis),
          createdAt,
          updatedAt: createdAt,
        });
        if (analysis.keyword?.kind === 'opt_out') {
          consentRows.push({ organizationId, contactId: contact.id, kind: 'opt_out', keyword: analysis.keyword.keyword, messageId: id, source: 'inbound', createdAt });
        }
      } else {
        const failed = faker.datatype.boolean({ probability: 0.04 });
        const status = failed ? faker.helpers.arrayElement(['failed', 'undelivered']) : isLast && faker.datatype.boolean({ probability: 0.3 }) ? 'sent' : 'delivered';
        thread.push({
          organizationId,
          id,
          conversationId,
          direction,
          body: fill(isFirst ? faker.helpers.arrayElement(OPENERS) : faker.helpers.arrayElement(OUTBOUND)),
          status,
          errorCode: failed ? faker.helpers.arrayElement(FAILED_CODES) : null,
          provider: 'simulated',
          providerMessageId: `SM${id.replaceAll('-', '')}`,
          creditsCharged: 1,
          segments: 1,
          // The opener went out from an integration (a campaign); replies by the team, in turn.
          sentByUserId: isFirst ? null : team[(index + i) % team.length]!.userId,
          createdAt,
          updatedAt: createdAt,
        });
      }
    }
    const newest = thread[0]!;
    let trailingInbound = 0;
    while (trailingInbound < thread.length && thread[trailingInbound]!.direction === 'incoming') trailingInbound += 1;
    const read = faker.datatype.boolean({ probability: 0.35 });
    // Work in progress: threads we answered last are resolved, pending or (one, not archived) snoozed; the others open.
    const status: ConversationStatusValue = endsInbound ? 'open' : index === 8 ? 'snoozed' : index % 6 === 2 ? 'resolved' : 'pending';
    conversationRows.push({
      organizationId,
      id: conversationId,
      contactId: contact.id,
      phoneNumber: contact.phoneNumber,
      lastMessageId: newest.id!,
      lastMessageBody: newest.body!,
      lastMessageAt: newest.createdAt!,
      lastDirection: newest.direction,
      unreadCount: read ? 0 : trailingInbound,
      isArchived: !endsInbound && index % 4 === 1,
      isStarred: index % 5 === 0,
      status,
      snoozedUntil: status === 'snoozed' ? new Date(now.getTime() + 86_400_000) : null,
      resolvedAt: status === 'resolved' ? new Date(newest.createdAt!.getTime() + 5 * 60_000) : null,
      // The owner, each agent, and unassigned, in turn.
      assigneeUserId: index % 4 === 3 ? null : team[index % 4]!.userId,
      waitingSince: trailingInbound > 0 ? thread[trailingInbound - 1]!.createdAt! : null,
      createdAt: thread.at(-1)!.createdAt!,
      updatedAt: newest.createdAt!,
    });
    messageRows.push(...thread.reverse());
    // A STOP as the last message: the contact is opted out, as an inbound STOP would have done.
    if (index === stopThread) contact.isOptedIn = false;
  });

  await db.transaction(async (tx) => {
    await tx.insert(contacts).values(contactRows);
    await tx.insert(conversations).values(conversationRows);
    for (let i = 0; i < messageRows.length; i += 1000) await tx.insert(messages).values(messageRows.slice(i, i + 1000));
    if (consentRows.length > 0) await tx.insert(consentEvents).values(consentRows);
  });

  return {
    organizationId,
    apiToken,
    integrationToken,
    phoneNumber: sendingNumber,
    contacts: contactRows.length,
    messages: messageRows.length,
    team,
  };
}
