import { and, asc, eq, inArray, sql } from 'drizzle-orm';
import type { DbOrTx } from '../db/client.js';
import { organizations, phoneNumbers } from '../db/tables.js';
import { AppError, badUserInput } from '../errors.js';
import { issueApiToken } from './api-tokens.js';
import { isUuid } from './cursors.js';
import { normalizePhone } from './phone.js';

export function assertTimezone(timezone: string): string {
  try {
    // Throws RangeError for names that are not IANA zones.
    return new Intl.DateTimeFormat('en-US', { timeZone: timezone }).resolvedOptions().timeZone;
  } catch {
    throw badUserInput(`Unknown IANA timezone: ${JSON.stringify(timezone)}`, { field: 'timezone' });
  }
}

/** Creates an organization and its first API token (returned once, stored only as a hash). */
export async function createOrganization(
  db: DbOrTx,
  input: { name: string; credits?: number; timezone?: string },
): Promise<{ organizationId: string; apiToken: string }> {
  const name = input.name.trim();
  if (!name) throw badUserInput('Organization name must not be empty.', { field: 'name' });
  const credits = input.credits ?? 0;
  if (!Number.isInteger(credits) || credits < 0) throw badUserInput('credits must be a non-negative integer.', { field: 'credits' });
  const timezone = assertTimezone(input.timezone ?? 'America/New_York');
  return db.transaction(async (tx) => {
    const [org] = await tx.insert(organizations).values({ name, credits, timezone }).returning({ id: organizations.id });
    const { apiToken } = await issueApiToken(tx, org!.id);
    return { organizationId: org!.id, apiToken };
  });
}

export async function getOrganization(db: DbOrTx, organizationId: string) {
  const [org] = await db.select().from(organizations).where(eq(organizations.id, organizationId)).limit(1);
  if (!org) throw new AppError('NOT_FOUND', 'Organization not found.');
  return org;
}

export async function organizationExists(db: DbOrTx, organizationId: string): Promise<boolean> {
  if (!isUuid(organizationId)) return false;
  const rows = await db.select({ id: organizations.id }).from(organizations).where(eq(organizations.id, organizationId)).limit(1);
  return rows.length > 0;
}

/** Adds a sending number; `isDefault` makes it the organization's default (replacing the previous one). */
export async function addPhoneNumber(
  db: DbOrTx,
  organizationId: string,
  input: { phoneNumber: string; isDefault?: boolean; messagingServiceSid?: string | null },
): Promise<{ phoneNumberId: string; phoneNumber: string; messagingServiceSid: string | null }> {
  const phoneNumber = normalizePhone(input.phoneNumber);
  const messagingServiceSid = input.messagingServiceSid?.trim() || null;
  // Twilio's Messaging Service SIDs: MG and 32 hex digits.
  if (messagingServiceSid && !/^MG[0-9a-f]{32}$/i.test(messagingServiceSid)) {
    throw badUserInput(`${messagingServiceSid.slice(0, 40)} is not a Twilio Messaging Service SID (MG followed by 32 hex digits).`, {
      field: 'messagingServiceSid',
    });
  }
  return db.transaction(async (tx) => {
    const taken = await tx.select({ organizationId: phoneNumbers.organizationId }).from(phoneNumbers).where(eq(phoneNumbers.phoneNumber, phoneNumber));
    if (taken.length > 0) throw badUserInput(`${phoneNumber} is already registered as a sending number.`, { field: 'phoneNumber' });
    if (input.isDefault) {
      await tx
        .update(phoneNumbers)
        .set({ isDefault: false })
        .where(and(eq(phoneNumbers.organizationId, organizationId), eq(phoneNumbers.isDefault, true)));
    }
    const [row] = await tx
      .insert(phoneNumbers)
      .values({ organizationId, phoneNumber, isDefault: input.isDefault ?? false, messagingServiceSid })
      .returning({ id: phoneNumbers.id });
    return { phoneNumberId: row!.id, phoneNumber, messagingServiceSid };
  });
}

export async function phoneNumbersOfOrganization(db: DbOrTx, organizationId: string) {
  return db
    .select()
    .from(phoneNumbers)
    .where(eq(phoneNumbers.organizationId, organizationId))
    .orderBy(sql`${phoneNumbers.isDefault} desc`, asc(phoneNumbers.createdAt), asc(phoneNumbers.id));
}

export async function phoneNumbersByIds(db: DbOrTx, organizationId: string, ids: readonly string[]) {
  const valid = ids.filter(isUuid);
  if (valid.length === 0) return [];
  return db
    .select()
    .from(phoneNumbers)
    .where(and(eq(phoneNumbers.organizationId, organizationId), inArray(phoneNumbers.id, valid)));
}
