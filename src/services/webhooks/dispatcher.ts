import type { Logger } from 'pino';
import type { WebhookConfig } from '../../config.js';
import type { Db } from '../../db/client.js';
import { Batcher, type Settled } from '../batcher.js';
import { PeriodicTask } from '../periodic.js';
import { claimDue, FAN_OUT_BATCH, fanOut, recordOutcomes, type Claimed, type Outcome } from './dispatch-statements.js';
import { WebhookSender } from './sender.js';
import type { LookupAll } from './url-policy.js';

// Each instance's sender of outgoing webhooks (statements in dispatch-statements.ts). It fans the events of
// the outbox (webhook_events) out into deliveries, one per subscribed endpoint, one instance at a time so the
// deliveries keep the events' order; those it may send at once are written leased to it and sent with no
// claim. The rest, and retries, it claims as the job runner claims jobs (FOR UPDATE SKIP LOCKED, a lease: an
// attempt whose instance died is made again once WEBHOOK_LEASE_MS has passed). Two rules the job table
// cannot express hold either way:
// - order: a delivery is sent only when no earlier delivery of its key (the contact's phone number) to its
//   endpoint is still pending, so one conversation's events arrive in order, and a later one waits while an
//   earlier one is retried (up to its last attempt); other conversations are not held back;
// - isolation: at most WEBHOOK_ENDPOINT_CONCURRENCY attempts per endpoint are in flight from this instance
//   while others are, so a slow endpoint fills its own slots and no one else's.
// Requests come first: while more than WEBHOOK_YIELD_REQUESTS are in flight on this instance (on average
// since its last look), it fans out and starts only a trickle (BUSY_SHARE of its slots, one round per poll
// interval), so a burst of inbound traffic is not slowed by the deliveries it causes; they wait in the
// outbox, never lost, and catch up once it passes.

/** The share of WEBHOOK_CONCURRENCY (and of a fan-out) used while requests pile up: deliveries never stop. */
const BUSY_SHARE = 0.1;

export type DispatcherDeps = {
  db: Db;
  logger: Logger;
  config: WebhookConfig;
  lookup: LookupAll;
  /** HTTP requests this instance served at once on average since the last call: above WEBHOOK_YIELD_REQUESTS, deliveries step back. */
  requestsInFlight?: () => number;
  /** Told of each attempt as it ends (metrics): succeeded, or failed (retried later, or the last attempt). */
  onAttempt?: (outcome: 'succeeded' | 'retry' | 'failed', durationMs: number) => void;
};

export class WebhookDispatcher {
  private readonly task: PeriodicTask;
  private readonly sender: WebhookSender;
  private closed = false;
  /** Attempts in flight from this instance, per endpoint. */
  private readonly inFlight = new Map<string, number>();
  private readonly recorder = new Batcher<Outcome, void>((outcomes) => this.record(outcomes), 500, 2);
  /** Attempts this instance made (tests, logs). */
  attempted = 0;

  constructor(private readonly deps: DispatcherDeps) {
    this.task = new PeriodicTask('sending webhooks', deps.config.pollMs, () => this.drain(), deps.logger);
    this.sender = new WebhookSender(deps.config, deps.lookup);
  }

  start(): void {
    this.task.start();
  }

  runNow(): Promise<void> {
    return this.task.runNow();
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.task.close();
    await this.recorder.drain();
    this.sender.close();
  }

  /**
   * Fans new events out (sending at once those leased to it) and claims what is due while there is room;
   * again when a quarter of the slots freed up, when nothing is in flight any more, or after a poll interval
   * (so attempts waiting on a slow endpoint never hold back deliveries to others, and a conversation's next
   * event waits at most that long). Returns once nothing is due and nothing is in flight.
   */
  private async drain(): Promise<void> {
    const running = new Set<Promise<void>>();
    // An attempt frees its slot once the endpoint answered; its outcome is recorded in a batch meanwhile.
    const recording = new Set<Promise<void>>();
    const { concurrency, pollMs } = this.deps.config;
    const threshold = Math.max(1, Math.floor(concurrency / 4));
    let finished = 0;
    let wake: (() => void) | null = null;
    const begin = (delivery: Claimed) => {
      this.inFlight.set(delivery.endpointId, (this.inFlight.get(delivery.endpointId) ?? 0) + 1);
      const run = this.attempt(delivery, recording, () => {
        // Recorded: a successor it kept waiting may be due now.
        if (running.size === 0) wake?.();
      }).finally(() => {
        running.delete(run);
        this.inFlight.set(delivery.endpointId, this.inFlight.get(delivery.endpointId)! - 1);
        if (this.inFlight.get(delivery.endpointId) === 0) this.inFlight.delete(delivery.endpointId);
        finished += 1;
        if (finished >= threshold || running.size === 0) wake?.();
      });
      running.add(run);
    };
    try {
      while (!this.closed) {
        finished = 0;
        const busy = this.busy();
        const slots = busy ? Math.max(1, Math.floor(concurrency * BUSY_SHARE)) : concurrency;
        const batch = busy ? Math.max(1, Math.floor(FAN_OUT_BATCH * BUSY_SHARE)) : FAN_OUT_BATCH;
        const fanned = await fanOut(this.deps.db, this.deps.config, batch, { total: Math.max(0, slots - running.size), inFlight: this.inFlight });
        for (const delivery of fanned.leased) begin(delivery);
        const room = slots - running.size;
        const claimed = room > 0 ? await claimDue(this.deps.db, this.deps.config, { total: room, inFlight: this.inFlight }) : [];
        for (const delivery of claimed) begin(delivery);
        if (running.size === 0 && recording.size === 0 && fanned.events === 0) return;
        // A full batch of events, or every slot claimed: more is waiting (while busy, it waits a poll interval).
        if (!busy && (fanned.events >= batch || (claimed.length > 0 && claimed.length === room))) continue;
        let timer: NodeJS.Timeout | undefined;
        await new Promise<void>((resolve) => {
          // While busy, one cycle per poll interval: woken early, it would fan everything out at once.
          if (!busy) wake = resolve;
          timer = setTimeout(resolve, pollMs);
        });
        wake = null;
        clearTimeout(timer);
      }
    } finally {
      await Promise.all(running);
      await Promise.all(recording);
    }
  }

  private busy(): boolean {
    const { yieldRequests } = this.deps.config;
    return yieldRequests > 0 && (this.deps.requestsInFlight?.() ?? 0) > yieldRequests;
  }

  /** Makes the attempt; its recording is added to `recording` (the lease stays until it is recorded). */
  private async attempt(delivery: Claimed, recording: Set<Promise<void>>, onRecorded: () => void): Promise<void> {
    const result = await this.sender.send(delivery);
    this.attempted += 1;
    const last = this.deps.config.retryScheduleMs[delivery.attempt - 1] === undefined;
    this.deps.onAttempt?.(result.ok ? 'succeeded' : last ? 'failed' : 'retry', result.durationMs);
    const recorded: Promise<void> = this.recorder
      .submit({ delivery, result })
      // The lease ends and the delivery is claimed again: at least once.
      .catch((error: unknown) => this.deps.logger.warn({ err: error, deliveryId: delivery.id }, 'webhook attempt not recorded; it will be made again'))
      .finally(() => {
        recording.delete(recorded);
        onRecorded();
      });
    recording.add(recorded);
  }

  private async record(outcomes: Outcome[]): Promise<Settled<void>[]> {
    await recordOutcomes(this.deps.db, this.deps.config, outcomes);
    return outcomes.map(() => ({ ok: true, value: undefined }));
  }
}
