import { context, propagation } from '@opentelemetry/api';
import PQueue from 'p-queue';
import twilio from 'twilio';

// Every call the SDK makes goes through here: at most `maxConcurrent` in flight per account (Twilio answers
// HTTP 429, error 20429, past its concurrency limit), the rest waiting in a bounded FIFO queue, and 429 and
// 5xx answers retried with exponential backoff and full jitter, honouring Retry-After. All of it, waiting
// included, within one deadline (SMS_PROVIDER_TIMEOUT_MS) from the moment the SDK asked.
// Why not the SDK's own `autoRetry`: in twilio 6.2 it retries 429 only (not 5xx), ignores Retry-After, and
// gives each retry a fresh timeout, so a send could outlive SMS_PROVIDER_TIMEOUT_MS (read in
// node_modules/twilio/lib/base/RequestClient.js, getExponentialBackoffResponseHandler).

type RequestOptions<TData> = import('twilio/lib/base/RequestClient.js').RequestOptions<TData>;
type Response<TData> = Awaited<ReturnType<twilio.RequestClient['request']>> & { body: TData };

export type ThrottleOptions = {
  /** Replaces scheme and host of every call; unset: Twilio's own hosts. */
  base?: URL;
  /** The whole budget of one call: queue wait, attempts and backoff. */
  timeoutMs: number;
  maxConcurrent: number;
  /** Calls waiting for a slot beyond this are refused at once (ProviderBusy). */
  maxQueued: number;
};

/** The call never got a slot (queue full, or waited out its deadline): nothing reached Twilio. */
export class ProviderBusy extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ProviderBusy';
  }
}

const FIRST_BACKOFF_MS = 100;
const MAX_BACKOFF_MS = 2_000;

/** Retry-After in milliseconds (seconds or an HTTP date); null when absent or unreadable. */
export function retryAfterMs(header: unknown, now = Date.now()): number | null {
  const value = Array.isArray(header) ? header[0] : header;
  if (typeof value !== 'string' && typeof value !== 'number') return null;
  const seconds = Number(value);
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
  const at = Date.parse(String(value));
  return Number.isNaN(at) ? null : Math.max(0, at - now);
}

const retryable = (status: number) => status === 429 || status >= 500;

export class ThrottledRequestClient extends twilio.RequestClient {
  private readonly queue: PQueue;
  /** Twilio calls in flight now, and the most at once since start (tests, diagnostics). */
  inFlight = 0;
  maxInFlight = 0;

  constructor(
    private readonly throttle: ThrottleOptions,
    options: ConstructorParameters<typeof twilio.RequestClient>[0],
  ) {
    super(options);
    this.queue = new PQueue({ concurrency: throttle.maxConcurrent });
  }

  override async request<TData>(opts: RequestOptions<TData>): Promise<Response<TData>> {
    const deadline = Date.now() + this.throttle.timeoutMs;
    let uri = opts.uri;
    if (this.throttle.base) {
      const rebased = new URL(opts.uri);
      rebased.protocol = this.throttle.base.protocol;
      rebased.host = this.throttle.base.host;
      uri = rebased.toString();
    }
    // The W3C traceparent of the active span (tracing on; otherwise nothing is added).
    const headers: Record<string, string> = { ...(opts.headers as Record<string, string> | undefined) };
    propagation.inject(context.active(), headers);
    for (let attempt = 1; ; attempt += 1) {
      const response = await this.inSlot(deadline, () =>
        super.request<TData>({ ...opts, uri, headers, timeout: Math.max(1, deadline - Date.now()) }),
      );
      if (!retryable(response.statusCode)) return response as Response<TData>;
      const backoff = Math.floor(Math.random() * Math.min(MAX_BACKOFF_MS, FIRST_BACKOFF_MS * 2 ** attempt));
      const wait = retryAfterMs(response.headers?.['retry-after']) ?? backoff;
      // No time left for another try: Twilio's answer stands (the SDK makes it a RestException).
      if (Date.now() + wait >= deadline) return response as Response<TData>;
      await new Promise((resolve) => setTimeout(resolve, wait));
    }
  }

  /** Runs `call` once a slot is free, in arrival order; ProviderBusy if the queue is full or the deadline passes first. */
  private async inSlot<T>(deadline: number, call: () => Promise<T>): Promise<T> {
    if (this.queue.pending >= this.throttle.maxConcurrent && this.queue.size >= this.throttle.maxQueued) {
      throw new ProviderBusy(`${this.queue.size} Twilio calls are already waiting (TWILIO_MAX_QUEUED_REQUESTS)`);
    }
    const waited = new AbortController();
    const timer = setTimeout(() => waited.abort(), Math.max(0, deadline - Date.now()));
    try {
      return await this.queue.add(
        async () => {
          // Started: from here the call is bounded by its own timeout, and keeps its slot until it ends.
          clearTimeout(timer);
          this.inFlight += 1;
          this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
          try {
            return await call();
          } finally {
            this.inFlight -= 1;
          }
        },
        { signal: waited.signal },
      );
    } catch (error) {
      if (waited.signal.aborted) {
        throw new ProviderBusy(`no free slot among TWILIO_MAX_CONCURRENT_REQUESTS (${this.throttle.maxConcurrent}) within the provider timeout`);
      }
      throw error;
    } finally {
      clearTimeout(timer);
    }
  }
}
