import twilio from 'twilio';

/** Parameters of a form-encoded webhook; a repeated key keeps every value (Twilio signs them all). */
export type WebhookParams = Record<string, string | string[]>;

/**
 * Whether `signature` (the X-Twilio-Signature header) is Twilio's HMAC-SHA1 of `url` (the public URL
 * Twilio called, query string included) and every POST parameter, keyed with the account's auth token.
 * The SDK compares in constant time and also accepts the URL with or without its default port.
 */
export function verifyTwilioSignature(authToken: string, signature: string | undefined, url: string, params: WebhookParams): boolean {
  if (!signature) return false;
  return twilio.validateRequest(authToken, signature, url, params);
}
