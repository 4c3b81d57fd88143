import { parsePhoneNumberFromString } from 'libphonenumber-js';
import { AppError } from '../errors.js';

/**
 * Normalizes any standard phone format to E.164, reading numbers without a country code as US
 * ("(919) 555-1234", "919.555.1234", "+19195551234", "%2B19195551234" once URL-decoded).
 * Returns null when the input is not a valid number.
 */
export function parsePhone(input: string): string | null {
  if (typeof input !== 'string' || input.length > 64) return null;
  // Parsing costs tens of microseconds and the same numbers come back all the time (an organization's
  // own numbers on every inbound webhook, its contacts on every reply): remember recent answers.
  const known = parsed.get(input);
  if (known !== undefined) return known;
  const number = parsePhoneNumberFromString(input.trim(), 'US');
  const e164 = number && number.isValid() ? number.number : null;
  if (parsed.size >= PARSED_LIMIT) parsed.clear();
  parsed.set(input, e164);
  return e164;
}

const PARSED_LIMIT = 10_000;
const parsed = new Map<string, string | null>();

/** Like parsePhone, but throws INVALID_PHONE_NUMBER for the caller to see. */
export function normalizePhone(input: string, field = 'phoneNumber'): string {
  const e164 = parsePhone(input);
  if (!e164) {
    throw new AppError('INVALID_PHONE_NUMBER', `${field} is not a valid phone number: ${JSON.stringify(String(input).slice(0, 64))}`, {
      field,
    });
  }
  return e164;
}
