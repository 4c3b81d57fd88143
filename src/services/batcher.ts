// Group commit for the write paths: callers that arrive while a batch is being written wait for the
// next one, which then writes all of them in one transaction with multi-row statements. Nothing waits on
// a timer: an idle batcher starts on the next turn of the event loop (so the requests parsed in the same
// turn join), and under load each batch takes everything that queued up during the previous one.

import type { Db } from '../db/client.js';
import { shuttingDown, stateKey, type ServiceState, type StatePart } from './state.js';

export type Settled<O> = { ok: true; value: O } | { ok: false; error: unknown };

type Entry<I, O> = { item: I; resolve: (value: O) => void; reject: (error: unknown) => void };

export class Batcher<I, O> implements StatePart {
  private queue: Entry<I, O>[] = [];
  private running = 0;
  private writing = 0;
  private scheduled = false;
  private closed = false;
  private idle: (() => void)[] = [];

  /**
   * `write` gets the items of one batch and answers one result per item, in the same order; it
   * resolves each caller itself only through that array, so it must settle every item.
   */
  constructor(
    private readonly write: (items: I[]) => Promise<Settled<O>[]>,
    private readonly maxBatch = 256,
    /** Batches written at once: a second one can start (and wait on the first one's locks) while the first commits. */
    private readonly concurrency = 1,
  ) {}

  submit(item: I): Promise<O> {
    if (this.closed) return Promise.reject(shuttingDown());
    return new Promise<O>((resolve, reject) => {
      this.queue.push({ item, resolve, reject });
      if (this.running < this.concurrency && !this.scheduled) {
        this.scheduled = true;
        setImmediate(() => {
          this.scheduled = false;
          this.pump();
        });
      }
    });
  }

  /** Items queued or being written. */
  held(): number {
    return this.queue.length + this.writing;
  }

  /** Refuses new items and resolves once every item already submitted is written (or has failed). */
  drain(): Promise<void> {
    this.closed = true;
    if (this.held() === 0 && !this.scheduled) return Promise.resolve();
    return new Promise((resolve) => this.idle.push(resolve));
  }

  private pump() {
    if (this.running === 0 && this.queue.length === 0) {
      for (const resolve of this.idle.splice(0)) resolve();
      return;
    }
    if (this.running >= this.concurrency || this.queue.length === 0) return;
    this.running += 1;
    const batch = this.queue.splice(0, this.maxBatch);
    this.writing += batch.length;
    this.write(batch.map((entry) => entry.item))
      .then(
        (results) => {
          batch.forEach((entry, index) => {
            const result = results[index];
            if (!result) entry.reject(new Error('batch write gave no result for an item'));
            else if (result.ok) entry.resolve(result.value);
            else entry.reject(result.error);
          });
        },
        (error: unknown) => {
          for (const entry of batch) entry.reject(error);
        },
      )
      .finally(() => {
        this.running -= 1;
        this.writing -= batch.length;
        this.pump();
      });
  }
}

/**
 * The accessor of one batcher per gateway instance, kept in the instance's ServiceState (so it is drained
 * before the database closes) and made on first use around the instance's database.
 */
export function instanceBatcher<I, O>(name: string, create: (instance: Instance) => Batcher<I, O>): (deps: Instance) => Batcher<I, O> {
  const key = stateKey<Batcher<I, O>>(name);
  return (deps) => deps.state.get(key, () => create({ db: deps.db, state: deps.state }));
}

/** The database and the state of one gateway instance: what a batcher's writes may use. */
export type Instance = { db: Db; state: ServiceState };

/**
 * Runs `write` on the whole batch; if it fails, on each item alone, so that one bad item (a value the
 * database refuses, a duplicate) fails by itself. A database that is away fails them all at once.
 */
export async function writeOrIsolate<I, O>(
  items: I[],
  write: (items: I[]) => Promise<Settled<O>[]>,
  isUnavailable: (error: unknown) => boolean,
): Promise<Settled<O>[]> {
  try {
    return await write(items);
  } catch (error) {
    if (items.length === 1 || isUnavailable(error)) return items.map(() => ({ ok: false, error }));
    const results: Settled<O>[] = [];
    for (const item of items) results.push(...(await writeOrIsolate([item], write, isUnavailable)));
    return results;
  }
}
