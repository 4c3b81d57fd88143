import twilio from 'twilio';
import type { LineTypeResult, OutgoingMessage, SendInDoubt, SendRecord, SendResult, SmsProvider } from '../sms-provider.js';
import { ProviderBusy, ThrottledRequestClient } from './throttled-client.js';

export type TwilioProviderOptions = {
  accountSid: string;
  authToken: string;
  /** Replaces scheme and host of every API call (Messages and Lookup alike); unset: Twilio's own hosts. */
  apiBaseUrl?: string;
  timeoutMs: number;
  /** TWILIO_MAX_CONCURRENT_REQUESTS: calls in flight at once from this instance. */
  maxConcurrentRequests?: number;
  /** TWILIO_MAX_QUEUED_REQUESTS: calls waiting for a slot before more are refused as busy. */
  maxQueuedRequests?: number;
};

// Lookup v2 line types (https://www.twilio.com/docs/lookup/v2-api/line-type-intelligence). Only mobile
// numbers take SMS reliably; landlines, VoIP of either kind, toll-free, pagers and the rest do not.
const NOT_TEXTABLE = new Set([
  'landline',
  'fixedVoip',
  'nonFixedVoip',
  'tollFree',
  'voicemail',
  'pager',
  'premium',
  'sharedCost',
  'uan',
  'personal',
]);

/** Messages read when looking for a send in doubt, and the clock difference allowed between us and Twilio. */
const FIND_PAGE_SIZE = 50;
const FIND_PAGES = 5;
const CLOCK_SLACK_MS = 60_000;

export class TwilioProvider implements SmsProvider {
  readonly name = 'twilio' as const;
  private readonly client: twilio.Twilio;
  /** Exposed for tests and diagnostics: calls in flight now and at most. */
  readonly http: ThrottledRequestClient;

  constructor(options: TwilioProviderOptions) {
    const httpOptions = { timeout: options.timeoutMs, keepAlive: true };
    const httpClient = new ThrottledRequestClient(
      {
        base: options.apiBaseUrl ? new URL(options.apiBaseUrl) : undefined,
        timeoutMs: options.timeoutMs,
        maxConcurrent: options.maxConcurrentRequests ?? 25,
        maxQueued: options.maxQueuedRequests ?? 1_000,
      },
      httpOptions,
    );
    this.http = httpClient;
    // Pass an empty env so the SDK takes nothing from process.env beyond what config.ts validated.
    this.client = twilio(options.accountSid, options.authToken, { httpClient, timeout: options.timeoutMs, env: {} });
  }

  async send(message: OutgoingMessage): Promise<SendResult> {
    try {
      const sent = await this.client.messages.create({
        to: message.to,
        // A Messaging Service picks the sender from its pool (A2P 10DLC): Twilio wants one or the other.
        ...(message.messagingServiceSid ? { messagingServiceSid: message.messagingServiceSid } : { from: message.from }),
        ...(message.body ? { body: message.body } : {}),
        ...(message.mediaUrls.length > 0 ? { mediaUrl: message.mediaUrls } : {}),
        // Only meaningful without media: media already makes it an MMS.
        ...(message.sendAsMms && message.mediaUrls.length === 0 ? { sendAsMms: true } : {}),
        statusCallback: message.statusCallbackUrl,
      });
      return { ok: true, providerMessageId: sent.sid, status: (sent.status ?? 'queued').toLowerCase() };
    } catch (error) {
      return sendFailure(error);
    }
  }

  /**
   * Twilio's messages from `from` to `to` (up to FIND_PAGES pages of FIND_PAGE_SIZE), searched for this
   * body created within `withinMs` after our reservation (a minute's slack either side for clocks). Not
   * among all of them: Twilio never got it. More than that: it cannot say (the list's order is Twilio's,
   * so a partial list proves nothing).
   */
  async findSend(send: SendInDoubt, withinMs: number): Promise<SendRecord> {
    const earliest = send.createdAt.getTime() - CLOCK_SLACK_MS;
    const latest = send.createdAt.getTime() + withinMs + CLOCK_SLACK_MS;
    try {
      type MessagesPage = Pick<Awaited<ReturnType<typeof this.client.messages.page>>, 'instances' | 'nextPageUrl' | 'nextPage'>;
      // A Messaging Service's sender is Twilio's pick: look by recipient, and match the service instead.
      const service = send.messagingServiceSid ?? null;
      let page: MessagesPage = await this.client.messages.page(
        service ? { to: send.to, pageSize: FIND_PAGE_SIZE } : { to: send.to, from: send.from, pageSize: FIND_PAGE_SIZE },
      );
      for (let read = 1; ; read += 1) {
        const match = page.instances.find((message) => {
          const created = message.dateCreated?.getTime() ?? NaN;
          if (service && message.messagingServiceSid !== service) return false;
          return message.body === send.body && created >= earliest && created <= latest;
        });
        if (match) return { kind: 'sent', providerMessageId: match.sid, status: (match.status ?? 'queued').toLowerCase() };
        if (!page.nextPageUrl) return { kind: 'not_sent' };
        if (read === FIND_PAGES) return { kind: 'unknown', reason: `more than ${FIND_PAGES * FIND_PAGE_SIZE} messages from ${send.from} to ${send.to}` };
        const next = await page.nextPage();
        if (!next) return { kind: 'not_sent' };
        page = next;
      }
    } catch (error) {
      return { kind: 'unknown', reason: error instanceof Error ? error.message : String(error) };
    }
  }

  async lookupLineType(phoneNumber: string): Promise<LineTypeResult> {
    const result = await this.client.lookups.v2.phoneNumbers(phoneNumber).fetch({ fields: 'line_type_intelligence' });
    if (result.valid === false) return { textable: false, lineType: null };
    const lineType = result.lineTypeIntelligence?.type ?? null;
    if (lineType === 'mobile') return { textable: true, lineType };
    if (lineType && NOT_TEXTABLE.has(lineType)) return { textable: false, lineType };
    // 'unknown' or no answer (Lookup's own error_code): not a verdict, so the caller retries later.
    const code = result.lineTypeIntelligence?.errorCode;
    throw new Error(`Twilio Lookup gave no line type for ${phoneNumber}${code ? ` (error ${code})` : ''}`);
  }

  async close(): Promise<void> {}
}

// Failures that prove the request never left us: nothing can have been created.
const NEVER_SENT = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'ERR_INVALID_URL', 'ERR_BAD_OPTION_VALUE']);

function sendFailure(error: unknown): SendResult {
  if (error instanceof ProviderBusy) return { ok: false, errorCode: null, busy: true, message: error.message };
  if (error instanceof twilio.RestException) {
    return {
      ok: false,
      errorCode: typeof error.code === 'number' ? error.code : null,
      message: error.message || `Twilio answered HTTP ${error.status}`,
      moreInfo: error.moreInfo ?? null,
    };
  }
  const message = error instanceof Error ? error.message : String(error);
  const code = (error as { code?: unknown } | null)?.code;
  const isAxios = (error as { isAxiosError?: unknown } | null)?.isAxiosError === true;
  // The SDK refused before any request (a bad parameter), or the connection never opened: nothing was sent.
  if (!isAxios || (typeof code === 'string' && NEVER_SENT.has(code))) {
    return { ok: false, errorCode: null, message: `Twilio could not be reached: ${message}` };
  }
  // A timeout, a reset or a hang-up once the request may have been written: Twilio may have the message.
  return { ok: false, inDoubt: true, message: `No answer from Twilio (${typeof code === 'string' ? code : message})` };
}
