import { randomBytes } from 'node:crypto';
import { and, asc, eq, inArray, sql } from 'drizzle-orm';
import { LinkifyIt } from 'linkify-it';
import type { DbOrTx } from '../db/client.js';
import { shortLinks, type ShortLinkRow } from '../db/tables.js';
import { isUuid } from './cursors.js';

// URLs in outgoing messages become `<base>/l/<code>` links that redirect and count clicks. Only explicit
// http(s) URLs are shortened (a bare "acme.com" stays as written), and links that already are our
// short links are left alone.

/** 8 characters of base64url: 48 random bits, and every character is GSM-7 (no change in encoding). */
export const SHORT_CODE_LENGTH = 8;
const CODE_PATTERN = /^[A-Za-z0-9_-]{6,64}$/;

const linkify = new LinkifyIt({ fuzzyLink: false, fuzzyEmail: false, fuzzyIP: false })
  // Only web links: the default schemas also match mailto:, ftp: and protocol-relative //host.
  .add('mailto:', null)
  .add('ftp:', null)
  .add('//', null);

export function newShortCode(): string {
  return randomBytes(6).toString('base64url');
}

export type PlannedLink = { url: string; code: string; shortUrl: string };

/**
 * Replaces every http(s) URL in `text` with a short link under `baseUrl` (one code per distinct URL).
 * Pure: the links are stored by `storeShortLinks` in the sending transaction.
 */
export function planShortLinks(text: string, baseUrl: string): { text: string; links: PlannedLink[] } {
  const matches = linkify.match(text) ?? [];
  if (matches.length === 0) return { text, links: [] };
  const prefix = `${baseUrl.replace(/\/+$/, '')}/l/`;
  const byUrl = new Map<string, PlannedLink>();
  let out = '';
  let last = 0;
  for (const match of matches) {
    if (!/^https?:/i.test(match.schema || match.url)) continue;
    if (match.url.startsWith(prefix)) continue;
    let link = byUrl.get(match.url);
    if (!link) {
      const code = newShortCode();
      link = { url: match.url, code, shortUrl: `${prefix}${code}` };
      byUrl.set(match.url, link);
    }
    out += text.slice(last, match.index) + link.shortUrl;
    last = match.lastIndex;
  }
  out += text.slice(last);
  return { text: out, links: [...byUrl.values()] };
}

/**
 * Stores planned links for a message. A code collision (48 random bits: practically never) gets a fresh
 * code of the same length, rewritten in the text, so the segment count does not change.
 */
export async function storeShortLinks(
  db: DbOrTx,
  organizationId: string,
  /** null: attached to the message later in the same transaction. */
  messageId: string | null,
  plan: { text: string; links: PlannedLink[] },
): Promise<{ text: string; links: ShortLinkRow[] }> {
  let { text } = plan;
  const stored: ShortLinkRow[] = [];
  for (const planned of plan.links) {
    let link = planned;
    for (let attempt = 0; ; attempt += 1) {
      const [row] = await db
        .insert(shortLinks)
        .values({ organizationId, code: link.code, url: link.url, shortUrl: link.shortUrl, messageId })
        .onConflictDoNothing({ target: shortLinks.code })
        .returning();
      if (row) {
        stored.push(row);
        break;
      }
      if (attempt >= 5) throw new Error('could not allocate a unique short-link code');
      const code = newShortCode();
      const shortUrl = link.shortUrl.slice(0, -link.code.length) + code;
      text = text.replaceAll(link.shortUrl, shortUrl);
      link = { ...link, code, shortUrl };
    }
  }
  return { text, links: stored };
}

/** Counts a click and returns the target URL; null for an unknown code. Global: `/l/<code>` has no tenant. */
export async function recordShortLinkClick(db: DbOrTx, code: string): Promise<string | null> {
  if (!CODE_PATTERN.test(code)) return null;
  const [row] = await db
    .update(shortLinks)
    .set({ clicks: sql`${shortLinks.clicks} + 1`, lastClickedAt: sql`now()` })
    .where(eq(shortLinks.code, code))
    .returning({ url: shortLinks.url });
  return row?.url ?? null;
}

/** The target of a code without counting (HEAD requests, link-preview robots). */
export async function resolveShortLink(db: DbOrTx, code: string): Promise<string | null> {
  if (!CODE_PATTERN.test(code)) return null;
  const [row] = await db.select({ url: shortLinks.url }).from(shortLinks).where(eq(shortLinks.code, code)).limit(1);
  return row?.url ?? null;
}

export async function shortLinksByMessageIds(db: DbOrTx, organizationId: string, messageIds: readonly string[]) {
  const valid = messageIds.filter(isUuid);
  if (valid.length === 0) return [];
  return db
    .select()
    .from(shortLinks)
    .where(and(eq(shortLinks.organizationId, organizationId), inArray(shortLinks.messageId, valid)))
    .orderBy(asc(shortLinks.createdAt), asc(shortLinks.id));
}
