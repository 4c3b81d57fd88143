import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import type { StatusOutcome, StatusUpdate } from '../../services/message-status.js';
import type { LineTypeResult, OutgoingMessage, SendRecord, SendResult, SmsProvider } from '../sms-provider.js';

export type SimulatedProviderOptions = {
  /** Delay before a message is reported sent and delivered. */
  statusDelayMs: number;
  /** The status path real provider callbacks take (applyMessageStatus). */
  applyStatus: (update: StatusUpdate) => Promise<StatusOutcome>;
  logger: Logger;
};

/**
 * Stands in for Twilio when no credentials are configured (the default for `npm start` and tests).
 * Rules, so demos and tests can predict it:
 * - every send is accepted with a Twilio-style `SM...` id; one status delay later it reports `sent`
 *   and then `delivered`, two callbacks through the same status-update path as real callbacks, made
 *   together (as Twilio's often arrive) so they are stored by one write (message-status.ts);
 * - lookup: a number whose last digit is 0 is a landline (not textable), any other is mobile.
 */
export class SimulatedProvider implements SmsProvider {
  readonly name = 'simulated' as const;
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly inFlight = new Set<Promise<unknown>>();
  private closed = false;

  constructor(private readonly options: SimulatedProviderOptions) {}

  async send(message: OutgoingMessage): Promise<SendResult> {
    if (this.closed) return { ok: false, errorCode: null, message: 'The simulated provider is shut down.' };
    const providerMessageId = `SM${randomBytes(16).toString('hex')}`;
    const update = { providerMessageId, organizationId: message.organizationId };
    this.later(this.options.statusDelayMs, async () => {
      // Both before either is awaited: they join one batch of status updates, in this order.
      await Promise.all([this.report({ ...update, status: 'sent' }, 0), this.report({ ...update, status: 'delivered' }, 0)]);
    });
    return { ok: true, providerMessageId, status: 'queued' };
  }

  /** Nothing leaves the process: a send whose answer was lost went nowhere, and is refunded. */
  async findSend(): Promise<SendRecord> {
    return { kind: 'not_sent' };
  }

  async lookupLineType(phoneNumber: string): Promise<LineTypeResult> {
    return phoneNumber.endsWith('0') ? { textable: false, lineType: 'landline' } : { textable: true, lineType: 'mobile' };
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
    await Promise.allSettled([...this.inFlight]);
  }

  private later(ms: number, run: () => Promise<void>) {
    if (this.closed) return;
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      const running = run().finally(() => this.inFlight.delete(running));
      this.inFlight.add(running);
    }, ms);
    // Pending simulated callbacks must not keep a finished process alive.
    timer.unref();
    this.timers.add(timer);
  }

  private async report(update: StatusUpdate, attempt: number): Promise<void> {
    try {
      const result = await this.options.applyStatus(update);
      // The sender stores our id right after send() returns; a callback can beat it, as with Twilio. Retry briefly.
      if (result.outcome === 'unknown_message' && attempt < 20) {
        this.later(50 * (attempt + 1), () => this.report(update, attempt + 1));
      }
    } catch (error) {
      if (!this.closed) this.options.logger.error({ err: error, update }, 'simulated status update failed');
    }
  }
}
