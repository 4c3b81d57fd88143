import { AppError } from '../../errors.js';
import { planShortLinks, type PlannedLink } from '../short-links.js';
import { bodyLength, MAX_BODY_CHARACTERS, measureSmsText, normalizeSmsText, type Encoding } from '../sms-text.js';
import type { SendReplyInput } from './types.js';

// The first steps of a send, made without touching the database: the input's shape, its idempotency key,
// and its text (normalized, links planned, segments and credits counted).

const MAX_MEDIA = 10;
const MAX_MEDIA_URL_LENGTH = 2048;
const MAX_IDEMPOTENCY_KEY_LENGTH = 255;

/** The text part of a reply, worked out without touching the database. */
export type Composition = {
  text: string;
  links: PlannedLink[];
  mediaUrls: string[];
  route: 'SMS' | 'MMS';
  encoding: Encoding;
  segments: number;
  credits: number;
  /** INVALID_MESSAGE, if the input breaks a rule. */
  error: AppError | null;
};

const invalidMessage = (message: string, details?: Record<string, unknown>) => new AppError('INVALID_MESSAGE', message, details);

function mediaOf(input: SendReplyInput): { urls: string[]; error: AppError | null } {
  const given = [...(input.mediaUrl ? [input.mediaUrl] : []), ...(input.mediaUrls ?? [])];
  const urls = [...new Set(given.map((url) => url.trim()))];
  if (urls.length > MAX_MEDIA)
    return { urls, error: invalidMessage(`At most ${MAX_MEDIA} media URLs can be attached.`, { maximum: MAX_MEDIA }) };
  for (const url of urls) {
    let parsed: URL | null = null;
    try {
      parsed = new URL(url);
    } catch {
      parsed = null;
    }
    if (!parsed || (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') || url.length > MAX_MEDIA_URL_LENGTH) {
      return {
        urls,
        error: invalidMessage(`Media URLs must be absolute http(s) URLs: ${JSON.stringify(url.slice(0, 100))}`, { field: 'mediaUrls' }),
      };
    }
  }
  return { urls, error: null };
}

export function compose(input: SendReplyInput, shortLinkBase: string, mmsPrice: number): Composition {
  const raw = typeof input.message === 'string' ? input.message : '';
  const media = mediaOf(input);
  const route: 'SMS' | 'MMS' = input.forceRoute === 'MMS' || (input.forceRoute !== 'SMS' && media.urls.length > 0) ? 'MMS' : 'SMS';
  if (bodyLength(raw) > MAX_BODY_CHARACTERS) {
    // Refused before segmenting: the segment calculator takes seconds to minutes on 100k-character inputs.
    const error = media.error ?? invalidMessage(`message must be at most ${MAX_BODY_CHARACTERS} characters.`, { field: 'message', maximum: MAX_BODY_CHARACTERS });
    return { text: raw.slice(0, MAX_BODY_CHARACTERS), links: [], mediaUrls: media.urls, route, encoding: 'GSM-7', segments: 0, credits: 0, error };
  }
  const trimmed = raw.trim();
  const normalized = input.normalizeText === false ? trimmed : normalizeSmsText(trimmed);
  const plan = planShortLinks(normalized, shortLinkBase);
  const measure = measureSmsText(plan.text);
  // An MMS is one message whatever its length; an SMS costs one credit per segment.
  const segments = route === 'MMS' ? 1 : measure.segments;
  const credits = route === 'MMS' ? mmsPrice : measure.segments;

  let error: AppError | null = media.error;
  if (!error && input.forceRoute === 'SMS' && media.urls.length > 0) {
    error = invalidMessage('Media cannot be sent with route SMS: use AUTO or MMS.', { field: 'forceRoute' });
  }
  if (!error && trimmed.length === 0 && media.urls.length === 0) error = invalidMessage('message must not be empty.', { field: 'message' });
  if (!error && bodyLength(raw) > MAX_BODY_CHARACTERS) {
    error = invalidMessage(`message must be at most ${MAX_BODY_CHARACTERS} characters.`, {
      field: 'message',
      maximum: MAX_BODY_CHARACTERS,
    });
  }
  if (!error && bodyLength(plan.text) > MAX_BODY_CHARACTERS) {
    error = invalidMessage(`message is longer than ${MAX_BODY_CHARACTERS} characters once its links are shortened.`, {
      field: 'message',
      maximum: MAX_BODY_CHARACTERS,
    });
  }
  return { text: plan.text, links: plan.links, mediaUrls: media.urls, route, encoding: measure.encoding, segments, credits, error };
}

// Module-level: made once, not on every send.
const invalid = (field: string, expected: string) => new AppError('INVALID_PARAMETER', `${field} must be ${expected}.`, { field });
const optional = (value: unknown) => value === null || value === undefined;

/** Shape checks for callers without a schema (REST bodies): wrong types are INVALID_PARAMETER, not a crash. */
export function checkShape(input: SendReplyInput): AppError | null {
  if (typeof input.message !== 'string') return invalidMessage('message must be a string.', { field: 'message' });
  if (!optional(input.mediaUrl) && typeof input.mediaUrl !== 'string') return invalid('mediaUrl', 'a string');
  if (!optional(input.mediaUrls) && !(Array.isArray(input.mediaUrls) && input.mediaUrls.every((url) => typeof url === 'string'))) {
    return invalid('mediaUrls', 'an array of strings');
  }
  if (!optional(input.normalizeText) && typeof input.normalizeText !== 'boolean') return invalid('normalizeText', 'a boolean');
  if (!optional(input.forceRoute) && !['AUTO', 'SMS', 'MMS'].includes(input.forceRoute as string))
    return invalid('forceRoute', 'AUTO, SMS or MMS');
  if (!optional(input.fromPhoneNumberId) && typeof input.fromPhoneNumberId !== 'string') return invalid('fromPhoneNumberId', 'a string');
  return null;
}

export function checkIdempotencyKey(key: string | null | undefined): string | null | AppError {
  if (key === null || key === undefined) return null;
  if (typeof key !== 'string' || key.length === 0 || key.length > MAX_IDEMPOTENCY_KEY_LENGTH) {
    return new AppError('INVALID_PARAMETER', `idempotencyKey must be 1 to ${MAX_IDEMPOTENCY_KEY_LENGTH} characters.`, {
      field: 'idempotencyKey',
    });
  }
  return key;
}
