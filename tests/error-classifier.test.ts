import { randomBytes } from 'node:crypto';
import { createConnection } from 'node:net';
import { sql } from 'drizzle-orm';
import { GraphQLError, locatedError } from 'graphql';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { messages } from '../src/db/tables.js';
import { classifyError } from '../src/error-classifier.js';
import { AppError, toGraphQLError } from '../src/errors.js';
import { createTestApp, type TestApp } from './helpers/app.js';
import { inboundForm, postTwilio, TEST_AUTH_TOKEN, TEST_PUBLIC_BASE_URL } from './helpers/realtime.js';

// One classifier (src/error-classifier.ts) turns what a surface caught into the catalogue's error; each
// surface only renders it. These cases use errors a real database and a real socket raise.

let t: TestApp;
const NUMBER = '+19195550170';

beforeAll(async () => {
  t = await createTestApp({ TWILIO_AUTH_TOKEN: TEST_AUTH_TOKEN, PUBLIC_BASE_URL: TEST_PUBLIC_BASE_URL });
  await t.createOrg('Classified', { phoneNumber: NUMBER });
});
afterAll(() => t?.close());

/** What the database throws for a value it cannot store or compare (SQLSTATE 22P02). */
const refusedByDatabase = () => t.db.execute(sql`select ${'not-a-uuid'}::uuid`).then(() => expect.fail('the cast should fail'), (error: unknown) => error);

describe('classifyError', () => {
  it('a value the database refuses is INVALID_PARAMETER (400), and BAD_USER_INPUT with that errorCode on GraphQL', async () => {
    const classified = classifyError(await refusedByDatabase());
    expect(classified.kind).toBe('refused-value');
    expect(classified.error.code).toBe('INVALID_PARAMETER');
    expect(classified.error.status).toBe(400);
    expect(toGraphQLError(classified.error).extensions).toMatchObject({ code: 'BAD_USER_INPUT', errorCode: 'INVALID_PARAMETER' });
    // Wrapped by graphql-js as a resolver's error: the same answer.
    expect(classifyError(locatedError(await refusedByDatabase(), [])).error.code).toBe('INVALID_PARAMETER');
  });

  it('an AppError keeps its code through graphql-js wrapping; a bug is INTERNAL_ERROR; a lost connection is SERVICE_UNAVAILABLE', async () => {
    const thrown = new AppError('CONTACT_NOT_FOUND', 'No contact.');
    expect(classifyError(locatedError(thrown, [])).error).toBe(thrown);
    expect(classifyError(new GraphQLError('outer', { originalError: thrown })).kind).toBe('expected');
    expect(classifyError(new TypeError('x is undefined'))).toMatchObject({ kind: 'unexpected', error: { code: 'INTERNAL_ERROR', status: 500 } });
    // A real refused connection (nothing listens on port 1).
    const refused = await new Promise<unknown>((resolve) => createConnection({ host: '127.0.0.1', port: 1 }).on('error', resolve));
    expect(classifyError(refused)).toMatchObject({ kind: 'unavailable', error: { code: 'SERVICE_UNAVAILABLE', status: 503 } });
  });
});

describe('a value the database refuses, on the surfaces', () => {
  it('Twilio webhook: 400 INVALID_PARAMETER (Twilio stops retrying), nothing stored', async () => {
    // A MessageSid too large for its unique index (btree rows stop at 2704 bytes): SQLSTATE 54000.
    const sid = `SM${randomBytes(3000).toString('base64url')}`;
    const res = await postTwilio(t.url, '/webhooks/twilio/messages', { ...inboundForm(NUMBER, '+12125550170', 'hello'), MessageSid: sid });
    expect(res.status).toBe(400);
    expect(JSON.parse(res.text)).toMatchObject({ success: false, code: 'INVALID_PARAMETER', message: 'A value is invalid or too large to store.' });
    const [stored] = await t.db.select({ n: sql<number>`count(*)::int` }).from(messages);
    expect(stored!.n).toBe(0);
  });
});
