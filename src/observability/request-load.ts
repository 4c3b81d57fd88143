import type { IncomingMessage, ServerResponse } from 'node:http';
import { performance } from 'node:perf_hooks';

/**
 * HTTP requests this instance is serving, long-lived event streams (SSE, multipart subscriptions) left out:
 * they stay open without costing anything. Background work that can wait (outgoing webhooks) reads the
 * average number in flight to step back while requests pile up (see WebhookDispatcher): an average over
 * time, so a burst of a few milliseconds does not count as being busy.
 */
export class RequestLoad {
  inFlight = 0;
  /** The integral of inFlight over time (request-milliseconds) since `from`. */
  private area = 0;
  private from = performance.now();
  private last = this.from;

  /** Counts this request until its response closes. */
  track(req: IncomingMessage, res: ServerResponse): void {
    if (/text\/event-stream|multipart\/mixed/.test(req.headers.accept ?? '')) return;
    this.advance();
    this.inFlight += 1;
    res.once('close', () => {
      this.advance();
      this.inFlight -= 1;
    });
  }

  /** The average number of requests in flight since the last call (or since this was made), and starts over. */
  averageInFlight(): number {
    this.advance();
    const elapsed = this.last - this.from;
    const average = elapsed > 0 ? this.area / elapsed : this.inFlight;
    this.area = 0;
    this.from = this.last;
    return average;
  }

  private advance(): void {
    const now = performance.now();
    this.area += this.inFlight * (now - this.last);
    this.last = now;
  }
}
