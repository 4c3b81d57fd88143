import type { IncomingMessage } from 'node:http';
import { AppError } from '../errors.js';

// Request bodies and the rules their content shares on every surface (REST, Twilio webhooks, GraphQL).

/**
 * REST and webhook bodies larger than this are refused before they are read in full: a reply or a
 * Twilio form post is a few kilobytes. GraphQL has its own limit (MAX_REQUEST_BODY_BYTES).
 */
export const MAX_BODY_BYTES = 64 * 1024;

const tooLarge = (maxBytes: number) => new AppError('PAYLOAD_TOO_LARGE', `The body must be at most ${maxBytes} bytes.`);

/**
 * The body, refused with PAYLOAD_TOO_LARGE when its declared length or the bytes received pass
 * `maxBytes` (then the rest is drained, so the answer can still be written).
 */
export function readBody(req: IncomingMessage, maxBytes = MAX_BODY_BYTES): Promise<Buffer> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > maxBytes) {
    req.resume();
    return Promise.reject(tooLarge(maxBytes));
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let settled = false;
    const settle = (error: Error | null) => {
      if (settled) return;
      settled = true;
      if (error) reject(error);
      else resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size));
    };
    // Not a for-await loop: leaving it early would destroy the socket before we can answer.
    req.on('data', (chunk: Buffer) => {
      if (settled) return;
      size += chunk.length;
      if (size > maxBytes) settle(tooLarge(maxBytes));
      else chunks.push(chunk);
    });
    req.on('end', () => settle(null));
    req.on('error', (error) => settle(error));
    // A client that went away: nothing to answer, and nothing to log as a failure of ours.
    req.on('close', () => settle(new AppError('INVALID_BODY', 'The client closed the request before sending the whole body.')));
  });
}

/**
 * Whether a string anywhere in a value (a parsed body, GraphQL variables) holds NUL: PostgreSQL refuses
 * NUL in text and embedded PGlite truncates at it, so every surface refuses it first, with a code.
 */
export function containsNul(value: unknown, depth = 0): boolean {
  if (typeof value === 'string') return value.includes('\u0000');
  if (depth > 20 || value === null || typeof value !== 'object') return false;
  for (const inner of Object.values(value)) if (containsNul(inner, depth + 1)) return true;
  return false;
}
