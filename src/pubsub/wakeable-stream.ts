import { Repeater } from '@graphql-yoga/subscription';

export type WakeableStreamOptions<T, E> = {
  /** The live subscription; it is started before the first drain, so nothing published after is missed. */
  live: AsyncIterator<E> & { return?(): Promise<unknown> };
  /** Resolves once live events are flowing (cross-instance LISTEN in place). */
  ready?: Promise<void>;
  /** Called for every live event; return true when `drain` has something new to read. */
  onEvent(event: E): boolean;
  /** Reads what is new and pushes it; must stop early when `stopped()` turns true. */
  drain(push: (value: T) => Promise<unknown>, stopped: () => boolean): Promise<void>;
  /** Drain once at the start (replay), before any event arrived. */
  drainAtStart?: boolean;
  /** Drain at least this often, to heal events lost between instances (ms; 0: never). */
  resyncMs?: number;
};

/**
 * A subscription stream in which live events only wake a reader that loads rows from the database.
 * Events are consumed as they come (never piling up in the live subscription, whatever the client's
 * speed), several events coalesce into one read, and the consumer gets backpressure through `push`.
 * Stopping (client gone, socket closed) ends the live subscription at once, even while waiting.
 */
export function wakeableStream<T, E>(options: WakeableStreamOptions<T, E>): Repeater<T> {
  return new Repeater<T>(async (push, stop) => {
    let stopped = false;
    let pending = options.drainAtStart ?? false;
    let signal: (() => void) | null = null;
    const wake = () => {
      pending = true;
      signal?.();
      signal = null;
    };
    void stop.then(() => {
      stopped = true;
      signal?.();
      signal = null;
    });

    // Pull live events continuously; the first next() registers the listener synchronously.
    const pump = (async () => {
      for (;;) {
        const next = await options.live.next();
        if (next.done) break;
        if (options.onEvent(next.value)) wake();
      }
    })();
    const timer = options.resyncMs ? setInterval(wake, options.resyncMs) : null;
    timer?.unref();

    try {
      await options.ready;
      while (!stopped) {
        if (!pending) await new Promise<void>((resolve) => (signal = resolve));
        if (stopped) break;
        pending = false;
        await options.drain(push, () => stopped);
      }
    } catch (error) {
      stop(error);
    } finally {
      if (timer) clearInterval(timer);
      await options.live.return?.();
      await pump.catch(() => {});
    }
  });
}
