// Group commit for the write paths: callers that arrive while a batch is being written wait for the
// next one, which then writes all of them in one transaction with multi-row statements. Nothing waits on
// a timer: an idle batcher starts on the next turn of the event loop (so the requests parsed in the same
// turn join), and under load each batch takes everything that queued up during the previous one.

export type Settled<O> = { ok: true; value: O } | { ok: false; error: unknown };

type Entry<I, O> = { item: I; resolve: (value: O) => void; reject: (error: unknown) => void };

export class Batcher<I, O> {
  private queue: Entry<I, O>[] = [];
  private running = 0;
  private scheduled = false;

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

  private pump() {
    if (this.running >= this.concurrency || this.queue.length === 0) return;
    this.running += 1;
    const batch = this.queue.splice(0, this.maxBatch);
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
        this.pump();
      });
  }
}

/** One batcher per key object (a database handle), created on first use; it goes with its key. */
export function batcherPer<K extends object, I, O>(create: (key: K) => Batcher<I, O>): (key: K) => Batcher<I, O> {
  const batchers = new WeakMap<K, Batcher<I, O>>();
  return (key) => {
    let batcher = batchers.get(key);
    if (!batcher) {
      batcher = create(key);
      batchers.set(key, batcher);
    }
    return batcher;
  };
}

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
