import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Deps } from '../../deps.js';
import { classifyError, logClassifiedError } from '../../error-classifier.js';
import { AppError } from '../../errors.js';
import { verifyTwilioSignature, type WebhookParams } from '../../providers/twilio/signature.js';
import { receiveInbound } from '../../services/inbound.js';
import { applyMessageStatus } from '../../services/message-status.js';
import { readBody } from '../body.js';
import { INBOUND_FLOOD_PER_MINUTE } from '../rate-limit.js';
import { sendErrorJson } from '../respond.js';

// Twilio's webhooks: inbound messages and delivery status callbacks. Both are verified against
// X-Twilio-Signature before anything is read into the data layer, and answered only after the
// transaction committed, so a 200 tells Twilio the message is safe (it retries on 5xx and timeouts).

export const TWILIO_MESSAGES_PATH = '/webhooks/twilio/messages';
export const TWILIO_STATUS_PATH = '/webhooks/twilio/status';

const EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>';

function readForm(req: IncomingMessage): Promise<URLSearchParams> {
  const type = req.headers['content-type']?.split(';')[0]?.trim().toLowerCase();
  if (type !== 'application/x-www-form-urlencoded') {
    req.resume();
    return Promise.reject(new AppError('INVALID_BODY', 'Twilio webhooks are form-encoded (application/x-www-form-urlencoded).'));
  }
  // Twilio's form posts are a few kilobytes (body up to 1,600 characters, up to 10 media URLs).
  return readBody(req).then((body) => new URLSearchParams(body.toString('utf8')));
}

/** Every parameter as received; a repeated key keeps all its values, as Twilio signs them all. */
function paramsOf(form: URLSearchParams): WebhookParams {
  const params: WebhookParams = {};
  for (const key of new Set(form.keys())) {
    const values = form.getAll(key);
    params[key] = values.length === 1 ? values[0]! : values;
  }
  return params;
}

function single(params: WebhookParams, name: string, required: true): string;
function single(params: WebhookParams, name: string, required?: false): string | undefined;
function single(params: WebhookParams, name: string, required = false): string | undefined {
  const value = params[name];
  if (Array.isArray(value)) throw new AppError('INVALID_PARAMETER', `${name} must be given once.`, { parameter: name });
  if (required && !value) throw new AppError('INVALID_PARAMETER', `${name} is required.`, { parameter: name });
  return value;
}

/** MediaUrl0, MediaUrl1, ... in index order (NumMedia says how many; we keep every one received). */
function mediaUrlsOf(params: WebhookParams): string[] {
  return Object.keys(params)
    .map((key) => /^MediaUrl(\d{1,2})$/.exec(key))
    .filter((match): match is RegExpExecArray => match !== null)
    .sort((a, b) => Number(a[1]) - Number(b[1]))
    .map((match) => single(params, match[0], true));
}

async function inbound(deps: Deps, params: WebhookParams, res: ServerResponse) {
  const to = single(params, 'To', true);
  const from = single(params, 'From', true);
  // Never refused (Twilio does not retry a 429): a sender flooding one number is stored in full and flagged.
  const flood = await deps.rateLimiter.inboundFlood(to, from);
  const outcome = await receiveInbound(deps, {
    to,
    from,
    body: single(params, 'Body') ?? '',
    mediaUrls: mediaUrlsOf(params),
    provider: 'twilio',
    providerMessageId: single(params, 'MessageSid', true),
    flaggedAsFlood: flood.flood,
  });
  if (outcome.outcome === 'stored') {
    deps.logger.info({ organizationId: outcome.organizationId, messageId: outcome.message.id, category: outcome.analysis.category }, 'inbound message stored');
    if (flood.first) {
      deps.logger.warn({ organizationId: outcome.organizationId, conversationId: outcome.message.conversationId, perMinute: INBOUND_FLOOD_PER_MINUTE }, 'inbound flood from one sender');
    }
  }
  res.writeHead(200, { 'content-type': 'text/xml; charset=utf-8' }).end(EMPTY_TWIML);
}

async function status(deps: Deps, params: WebhookParams, res: ServerResponse) {
  const errorCode = single(params, 'ErrorCode');
  await applyMessageStatus(
    deps,
    {
      providerMessageId: single(params, 'MessageSid', true),
      status: single(params, 'MessageStatus', true),
      errorCode: errorCode && /^\d{1,9}$/.test(errorCode) ? Number(errorCode) : null,
      // Who Twilio sent it from: a Messaging Service's pick, so the stored message names its real sender.
      from: single(params, 'From') || null,
    },
    // A callback can arrive before its send has stored the message's SID: it waits for it a while.
    { waitForMessageMs: deps.config.statusCallbackWaitMs },
  );
  // Messages still unknown after the wait, and unknown statuses, are logged and acknowledged.
  res.writeHead(200, { 'content-type': 'text/xml; charset=utf-8' }).end(EMPTY_TWIML);
}

/** POST /webhooks/twilio/messages and /webhooks/twilio/status. */
export async function handleTwilioWebhook(deps: Deps, req: IncomingMessage, res: ServerResponse, kind: 'messages' | 'status') {
  try {
    if (req.method !== 'POST') {
      req.resume();
      throw new AppError('METHOD_NOT_ALLOWED', `Twilio webhooks take POST, not ${req.method}.`);
    }
    const authToken = deps.config.twilioAuthToken;
    if (!authToken) {
      req.resume();
      throw new AppError(
        'SERVICE_UNAVAILABLE',
        'Twilio webhooks are disabled: set TWILIO_AUTH_TOKEN so their signatures can be verified. ' +
          '(Without Twilio, use the simulated provider and the CLI command `inbound`.)',
      );
    }
    const params = paramsOf(await readForm(req));
    // The URL Twilio called, as configured in its console: our public base URL, path and query string.
    const url = deps.config.publicBaseUrl + (req.url ?? '');
    const signature = req.headers['x-twilio-signature'];
    if (!verifyTwilioSignature(authToken, typeof signature === 'string' ? signature : undefined, url, params)) {
      deps.logger.warn({ path: req.url }, 'Twilio webhook with a missing or invalid signature refused');
      throw new AppError('INVALID_SIGNATURE', 'Missing or invalid X-Twilio-Signature.');
    }
    await (kind === 'messages' ? inbound(deps, params, res) : status(deps, params, res));
  } catch (error) {
    if (res.headersSent) return;
    // Twilio retries a 5xx later (the database briefly away, a bug since fixed) and gives up on a 4xx,
    // which is right for a value the database refused: a retry would fail the same way.
    const classified = classifyError(error);
    logClassifiedError(deps.logger, classified, 'Twilio webhook', { path: req.url });
    sendErrorJson(res, classified.error, { details: true });
  }
}
