import { context, propagation } from '@opentelemetry/api';
import twilio from 'twilio';
import type { LineTypeResult, OutgoingMessage, SendInDoubt, SendRecord, SendResult, SmsProvider } from '../sms-provider.js';

export type TwilioProviderOptions = {
  accountSid: string;
  authToken: string;
  /** Replaces scheme and host of every API call (Messages and Lookup alike); unset: Twilio's own hosts. */
  apiBaseUrl?: string;
  timeoutMs: number;
};

type RequestOptions<TData> = import('twilio/lib/base/RequestClient.js').RequestOptions<TData>;

/**
 * Sends every SDK request to `base` (when set) instead of *.twilio.com, keeping path and query. Each
 * request carries the W3C `traceparent` of the active span (tracing on; otherwise nothing is added).
 */
class RebasedRequestClient extends twilio.RequestClient {
  constructor(
    private readonly base: URL | null,
    options: ConstructorParameters<typeof twilio.RequestClient>[0],
  ) {
    super(options);
  }

  override request<TData>(opts: RequestOptions<TData>) {
    const headers: Record<string, string> = { ...(opts.headers as Record<string, string> | undefined) };
    propagation.inject(context.active(), headers);
    if (!this.base) return super.request<TData>({ ...opts, headers });
    const uri = new URL(opts.uri);
    uri.protocol = this.base.protocol;
    uri.host = this.base.host;
    return super.request<TData>({ ...opts, headers, uri: uri.toString() });
  }
}

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

  constructor(options: TwilioProviderOptions) {
    const httpOptions = { timeout: options.timeoutMs, keepAlive: true };
    const httpClient = new RebasedRequestClient(options.apiBaseUrl ? new URL(options.apiBaseUrl) : null, httpOptions);
    // Pass an empty env so the SDK takes nothing from process.env beyond what config.ts validated.
    this.client = twilio(options.accountSid, options.authToken, { httpClient, timeout: options.timeoutMs, env: {} });
  }

  async send(message: OutgoingMessage): Promise<SendResult> {
    try {
      const sent = await this.client.messages.create({
        to: message.to,
        from: message.from,
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
      let page: MessagesPage = await this.client.messages.page({ to: send.to, from: send.from, pageSize: FIND_PAGE_SIZE });
      for (let read = 1; ; read += 1) {
        const match = page.instances.find((message) => {
          const created = message.dateCreated?.getTime() ?? NaN;
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

function sendFailure(error: unknown): SendResult {
  if (error instanceof twilio.RestException) {
    return {
      ok: false,
      errorCode: typeof error.code === 'number' ? error.code : null,
      message: error.message || `Twilio answered HTTP ${error.status}`,
    };
  }
  // Network failure or timeout: the request may not have reached Twilio; the caller refunds.
  const message = error instanceof Error ? error.message : String(error);
  return { ok: false, errorCode: null, message: `Twilio could not be reached: ${message}` };
}
