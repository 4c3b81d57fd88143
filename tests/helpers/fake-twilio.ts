import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import twilio from 'twilio';

// A local HTTP server speaking the parts of Twilio's REST API the gateway uses, so tests run the real
// `twilio` SDK end to end (point it here with TWILIO_API_BASE_URL):
// - POST /2010-04-01/Accounts/{AccountSid}/Messages.json (form body, Basic auth) -> 201 Message JSON
// - GET  /2010-04-01/Accounts/{AccountSid}/Messages.json?To=&From=&PageSize= -> a page of Message JSON, newest first
// - GET  /v2/PhoneNumbers/{PhoneNumber}?Fields=line_type_intelligence (Basic auth) -> Lookup v2 JSON
// Errors come back in Twilio's format: { code, message, more_info, status }.
// It can also post signed status callbacks to the StatusCallback URL a message was sent with.
// Misbehaving as real Twilio does: 429 (20429) with Retry-After and 5xx (failNextSend), slow answers
// (delaySends), a connection reset after reading the request (resetNextSends, created or not), no answer
// at all (hangSendsTo); `maxInFlight` counts the most message creations it held at once.

/** `retryAfter`: a Retry-After header, in seconds (Twilio sends one with some 429s). */
export type TwilioErrorSpec = { code: number; message?: string; status?: number; retryAfter?: number };

export type SentMessage = {
  sid: string;
  accountSid: string;
  to: string;
  from: string;
  body: string;
  mediaUrls: string[];
  statusCallback: string | null;
  sendAsMms: boolean;
  /** MessagingServiceSid of the request (Twilio then picks `from` from the service's pool). */
  messagingServiceSid: string | null;
  dateCreated: Date;
  /** The raw form parameters, as received. */
  params: Record<string, string | string[]>;
};

export type FakeTwilioRequest = {
  method: string;
  path: string;
  query: string;
  authorized: boolean;
  params: URLSearchParams;
  /** The W3C trace context the client sent, if any. */
  traceparent?: string;
};

export type FakeTwilio = Awaited<ReturnType<typeof startFakeTwilio>>;

const ERROR_MESSAGES: Record<number, string> = {
  20003: 'Authenticate',
  20404: 'The requested resource was not found',
  20500: 'An internal server error has occurred',
  21211: "Invalid 'To' Phone Number",
  21610: 'Attempt to send to unsubscribed recipient',
  21614: "'To' number is not a valid mobile number",
  30003: 'Unreachable destination handset',
  30006: 'Landline or unreachable carrier',
};

function twilioError(res: ServerResponse, spec: TwilioErrorSpec) {
  const status = spec.status ?? (spec.code >= 20000 && spec.code < 20100 ? 401 : 400);
  const body = JSON.stringify({
    code: spec.code,
    message: spec.message ?? ERROR_MESSAGES[spec.code] ?? `Twilio error ${spec.code}`,
    more_info: `https://www.twilio.com/docs/errors/${spec.code}`,
    status,
  });
  const retryAfter = spec.retryAfter === undefined ? {} : { 'retry-after': String(spec.retryAfter) };
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), ...retryAfter }).end(body);
}

function json(res: ServerResponse, status: number, payload: unknown) {
  const body = JSON.stringify(payload);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }).end(body);
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

const rfc2822 = (date: Date) => date.toUTCString().replace('GMT', '+0000');

export async function startFakeTwilio(options: { accountSid?: string; authToken?: string } = {}) {
  const accountSid = options.accountSid ?? `AC${randomBytes(16).toString('hex')}`;
  const authToken = options.authToken ?? randomBytes(16).toString('hex');
  const expectedAuth = `Basic ${Buffer.from(`${accountSid}:${authToken}`).toString('base64')}`;

  const sent: SentMessage[] = [];
  const requests: FakeTwilioRequest[] = [];
  const lookups: string[] = [];
  const sendErrorsByRecipient = new Map<string, TwilioErrorSpec>();
  const nextSendErrors: TwilioErrorSpec[] = [];
  const lineTypes = new Map<string, string | null>();
  let lookupFailuresLeft = 0;
  let sendDelayMs = 0;
  let defaultLineType: string | null = 'mobile';
  let earlyCallback: { status: string; postTo: string; answerAfterMs: number } | null = null;
  /** Recipients whose sends never get an answer; `kept`: Twilio created the message all the same. */
  const hangingSendsTo = new Map<string, { kept: boolean }>();
  const earlyCallbacks: Promise<Response>[] = [];
  /** The next sends' connections are reset once their request is read; `kept`: the message was created first. */
  const resets: { kept: boolean }[] = [];
  const load = { inFlight: 0, maxInFlight: 0 };
  const serviceSenders = new Map<string, string>();

  /** A signed status callback, as Twilio signs it (X-Twilio-Signature over its URL and the sorted parameters). */
  function postStatusCallback(sid: string, status: string, extra: { errorCode?: number; url?: string; postTo?: string; authToken?: string } = {}) {
    const message = sent.find((m) => m.sid === sid);
    const target = extra.url ?? message?.statusCallback;
    if (!target) throw new Error(`no StatusCallback known for ${sid}`);
    const params: Record<string, string> = {
      AccountSid: accountSid,
      ApiVersion: '2010-04-01',
      From: message?.from ?? '',
      To: message?.to ?? '',
      MessageSid: sid,
      SmsSid: sid,
      SmsStatus: status,
      MessageStatus: status,
    };
    if (extra.errorCode !== undefined) params.ErrorCode = String(extra.errorCode);
    const signature = twilio.getExpectedTwilioSignature(extra.authToken ?? authToken, target, params);
    return fetch(extra.postTo ?? target, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-twilio-signature': signature },
      body: new URLSearchParams(params).toString(),
    });
  }

  /** Twilio's Message resource. */
  const messageJson = (record: SentMessage) => ({
    account_sid: accountSid,
    api_version: '2010-04-01',
    body: record.body,
    date_created: rfc2822(record.dateCreated),
    date_sent: null,
    date_updated: rfc2822(record.dateCreated),
    direction: 'outbound-api',
    error_code: null,
    error_message: null,
    from: record.from,
    messaging_service_sid: record.messagingServiceSid,
    num_media: String(record.mediaUrls.length),
    num_segments: '1',
    price: null,
    price_unit: 'USD',
    sid: record.sid,
    status: 'queued',
    subresource_uris: { media: `/2010-04-01/Accounts/${accountSid}/Messages/${record.sid}/Media.json` },
    to: record.to,
    uri: `/2010-04-01/Accounts/${accountSid}/Messages/${record.sid}.json`,
  });

  async function handle(req: IncomingMessage, res: ServerResponse) {
    const url = new URL(req.url ?? '/', 'http://fake-twilio');
    const raw = req.method === 'POST' ? await readBody(req) : '';
    const params = new URLSearchParams(raw);
    const authorized = req.headers.authorization === expectedAuth;
    const traceparent = typeof req.headers.traceparent === 'string' ? req.headers.traceparent : undefined;
    requests.push({ method: req.method ?? 'GET', path: decodeURIComponent(url.pathname), query: url.search, authorized, params, traceparent });
    if (!authorized) return twilioError(res, { code: 20003, status: 401 });

    const messagesPath = url.pathname.match(/^\/2010-04-01\/Accounts\/([^/]+)\/Messages\.json$/);
    if (messagesPath && req.method === 'GET') {
      if (messagesPath[1] !== accountSid) return twilioError(res, { code: 20404, status: 404 });
      const to = url.searchParams.get('To');
      const from = url.searchParams.get('From');
      const pageSize = Number(url.searchParams.get('PageSize') ?? 50);
      const pageNumber = Number(url.searchParams.get('Page') ?? 0);
      const matching = sent.filter((m) => (!to || m.to === to) && (!from || m.from === from)).reverse();
      const page = matching.slice(pageNumber * pageSize, (pageNumber + 1) * pageSize);
      const filters = `${to ? `&To=${encodeURIComponent(to)}` : ''}${from ? `&From=${encodeURIComponent(from)}` : ''}`;
      const listUri = `/2010-04-01/Accounts/${accountSid}/Messages.json`;
      const more = matching.length > (pageNumber + 1) * pageSize;
      return json(res, 200, {
        messages: page.map(messageJson),
        end: pageNumber * pageSize + Math.max(0, page.length - 1),
        first_page_uri: `${listUri}?PageSize=${pageSize}&Page=0${filters}`,
        next_page_uri: more ? `${listUri}?PageSize=${pageSize}&Page=${pageNumber + 1}${filters}` : null,
        page: pageNumber,
        page_size: pageSize,
        previous_page_uri: null,
        start: pageNumber * pageSize,
        uri: `${listUri}?PageSize=${pageSize}&Page=${pageNumber}${filters}`,
      });
    }
    if (messagesPath && req.method === 'POST') {
      load.inFlight += 1;
      load.maxInFlight = Math.max(load.maxInFlight, load.inFlight);
      // Counted until the answer is written (or the connection goes).
      res.once('close', () => (load.inFlight -= 1));
      if (messagesPath[1] !== accountSid) return twilioError(res, { code: 20404, status: 404 });
      if (sendDelayMs > 0) await new Promise((resolve) => setTimeout(resolve, sendDelayMs));
      const to = params.get('To') ?? '';
      const from = params.get('From') ?? '';
      if (!to) return twilioError(res, { code: 21604, message: "A 'To' phone number is required." });
      const messagingServiceSid = params.get('MessagingServiceSid');
      if (!from && !messagingServiceSid) return twilioError(res, { code: 21603, message: "A 'From' phone number is required." });
      const failure = nextSendErrors.shift() ?? sendErrorsByRecipient.get(to);
      if (failure) return twilioError(res, failure);
      const hanging = hangingSendsTo.get(to);
      const sid = `SM${randomBytes(16).toString('hex')}`;
      const mediaUrls = params.getAll('MediaUrl');
      const record: SentMessage = {
        sid,
        accountSid,
        to,
        // A Messaging Service picks the sender from its pool: here, the one setServiceSender named.
        from: from || (messagingServiceSid && serviceSenders.get(messagingServiceSid)) || '+15005550006',
        messagingServiceSid,
        body: params.get('Body') ?? '',
        mediaUrls,
        statusCallback: params.get('StatusCallback'),
        sendAsMms: params.get('SendAsMms') === 'true',
        dateCreated: new Date(),
        params: Object.fromEntries(
          [...new Set(params.keys())].map((key) => [key, params.getAll(key).length > 1 ? params.getAll(key) : params.get(key)!]),
        ),
      };
      const reset = resets.shift();
      if (reset) {
        if (reset.kept) sent.push(record);
        req.socket.destroy();
        return;
      }
      // A send that never gets its answer (the caller is killed meanwhile), created or not.
      if (hanging) {
        if (hanging.kept) sent.push(record);
        return;
      }
      sent.push(record);
      const early = earlyCallback;
      if (early && record.statusCallback) {
        // Twilio's callback beating its own API answer: the gateway hears of the SID before it knows it.
        earlyCallbacks.push(postStatusCallback(sid, early.status, { postTo: early.postTo }));
        await new Promise((resolve) => setTimeout(resolve, early.answerAfterMs));
      }
      return json(res, 201, messageJson(record));
    }

    const lookupPath = url.pathname.match(/^\/v2\/PhoneNumbers\/([^/]+)$/);
    if (lookupPath && req.method === 'GET') {
      const phoneNumber = decodeURIComponent(lookupPath[1]!);
      lookups.push(phoneNumber);
      if (lookupFailuresLeft > 0) {
        lookupFailuresLeft -= 1;
        return twilioError(res, { code: 20500, status: 500 });
      }
      const wantsLineType = (url.searchParams.get('Fields') ?? '').split(',').includes('line_type_intelligence');
      const type = lineTypes.has(phoneNumber) ? lineTypes.get(phoneNumber)! : defaultLineType;
      return json(res, 200, {
        calling_country_code: '1',
        country_code: 'US',
        phone_number: phoneNumber,
        national_format: phoneNumber,
        valid: true,
        validation_errors: [],
        caller_name: null,
        sim_swap: null,
        call_forwarding: null,
        line_status: null,
        line_type_intelligence: wantsLineType
          ? { error_code: type ? null : 60600, mobile_country_code: '310', mobile_network_code: '456', carrier_name: 'Fake Wireless', type }
          : null,
        identity_match: null,
        reassigned_number: null,
        sms_pumping_risk: null,
        phone_number_quality_score: null,
        pre_fill: null,
        url: `https://lookups.twilio.com/v2/PhoneNumbers/${phoneNumber}`,
      });
    }
    return twilioError(res, { code: 20404, status: 404 });
  }

  const server = createServer((req, res) => {
    handle(req, res).catch((error) => {
      res.writeHead(500).end(String(error));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  return {
    url,
    accountSid,
    authToken,
    /** Messages accepted, in arrival order. */
    sent,
    /** Every request, authorized or not. */
    requests,
    /** Numbers looked up, in order. */
    lookups,
    /** Every send to this number fails with this Twilio error. */
    failSendsTo(to: string, error: TwilioErrorSpec) {
      sendErrorsByRecipient.set(to, error);
    },
    /** The next send (whoever it is for) fails with this Twilio error. */
    failNextSend(error: TwilioErrorSpec) {
      nextSendErrors.push(error);
    },
    /** Holds every send this long before answering (provider timeouts). */
    delaySends(ms: number) {
      sendDelayMs = ms;
    },
    /** Lookup's line type for a number (null: no answer); others get the default (mobile). */
    setLineType(phoneNumber: string, type: string | null) {
      lineTypes.set(phoneNumber, type);
    },
    setDefaultLineType(type: string | null) {
      defaultLineType = type;
    },
    /** The next `count` lookups answer HTTP 500 (Twilio error 20500). */
    failLookups(count: number) {
      lookupFailuresLeft = count;
    },
    reset() {
      sent.length = 0;
      requests.length = 0;
      lookups.length = 0;
      sendErrorsByRecipient.clear();
      nextSendErrors.length = 0;
      lineTypes.clear();
      lookupFailuresLeft = 0;
      sendDelayMs = 0;
      defaultLineType = 'mobile';
      earlyCallback = null;
      earlyCallbacks.length = 0;
      hangingSendsTo.clear();
      resets.length = 0;
      load.maxInFlight = load.inFlight;
      serviceSenders.clear();
    },
    /** Message creations being handled now, and the most at once since start (or reset). */
    get inFlight() {
      return load.inFlight;
    },
    get maxInFlight() {
      return load.maxInFlight;
    },
    /** The next `count` sends have their connection reset once the request is read; `kept`: created first. */
    resetNextSends(count: number, options: { kept: boolean }) {
      for (let i = 0; i < count; i += 1) resets.push(options);
    },
    /** The number a Messaging Service sends from (its pool of one). */
    setServiceSender(messagingServiceSid: string, phoneNumber: string) {
      serviceSenders.set(messagingServiceSid, phoneNumber);
    },
    /**
     * Posts a status callback for a sent message to its StatusCallback URL (or `postTo`, still signed for the
     * StatusCallback URL: the gateway checks the signature against its public URL), signed as Twilio signs it.
     */
    sendStatusCallback(sid: string, status: string, extra: { errorCode?: number; url?: string; postTo?: string; authToken?: string } = {}) {
      return postStatusCallback(sid, status, extra);
    },
    /**
     * From now on every accepted send first posts this status callback to `postTo` (signed for its
     * StatusCallback URL), then answers the send `answerAfterMs` later. The callbacks' responses, in order.
     */
    callBackBeforeAnswering(status: string, postTo: string, answerAfterMs = 150) {
      earlyCallback = { status, postTo, answerAfterMs };
    },
    earlyCallbacks,
    /**
     * Sends to this number never get an answer (until the caller goes away); with `kept`, Twilio created
     * the message all the same (it is in `sent` and in the list), without it Twilio never got it.
     */
    hangSendsTo(to: string, options: { kept: boolean }) {
      hangingSendsTo.set(to, options);
    },
    /** Sends to this number are answered again (what was sent so far stays in `sent`). */
    stopHanging(to: string) {
      hangingSendsTo.delete(to);
    },
    /** Env for createTestApp: the gateway's Twilio provider, pointed at this server. */
    env(): Record<string, string> {
      return { TWILIO_ACCOUNT_SID: accountSid, TWILIO_AUTH_TOKEN: authToken, TWILIO_API_BASE_URL: url };
    },
    close() {
      return new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}
