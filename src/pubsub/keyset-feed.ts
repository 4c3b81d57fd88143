// One reader of rows in keyset order, shared by every subscriber of the same stream (an organization's
// inbound messages, optionally of one conversation). After a wake-up the feed reads the new rows once and
// hands the same row objects to every reader that is caught up ("live"). A reader that is behind (resuming
// after a cursor, or too slow to keep its queue short) reads by its own keyset until it reaches the feed's
// position, then joins it. Each reader skips rows at or before its own position, so joining while the
// feed is mid-read neither loses nor repeats a row.
//
// Gap-free only because rows commit in key order (inbound messages of an organization commit in
// (createdAt, id) order): "after the last key seen" then never skips a row that commits later.

export type FeedKey = { at: Date; id: string };

/** Orders keys as PostgreSQL orders (timestamptz, uuid): uuids compare bytewise, like their lowercase hex. */
export function compareKeys(a: FeedKey, b: FeedKey): number {
  const byTime = a.at.getTime() - b.at.getTime();
  if (byTime !== 0) return byTime;
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

/** True when `key` comes strictly after `position` (null: before everything). */
const isAfter = (key: FeedKey, position: FeedKey | null) => position === null || compareKeys(key, position) > 0;

export type FeedSource<T> = {
  /** Rows strictly after `after` (null: from the first), oldest first, at most `limit`. */
  read(after: FeedKey | null, limit: number): Promise<T[]>;
  keyOf(row: T): FeedKey;
};

export type FeedOptions = {
  /** Called once, when the last reader leaves: stop listening, forget the feed. */
  onIdle: () => void;
  /** Called with +1 / -1 as readers come and go. */
  onReaders?: (delta: number) => void;
  /** Rows per read. */
  page?: number;
  /** Rows a live reader may have queued before it is treated as behind (and reads for itself). */
  maxQueue?: number;
};

export class KeysetFeed<T> {
  /** Key of the last row the feed read (or where it started). */
  private position: FeedKey | null;
  private readonly live = new Set<FeedReader<T>>();
  /** Every open reader, live or behind. */
  private readonly members = new Set<FeedReader<T>>();
  private readers = 0;
  private reading = false;
  private readAgain = false;
  closed = false;
  readonly page: number;
  readonly maxQueue: number;

  constructor(
    readonly source: FeedSource<T>,
    start: FeedKey | null,
    private readonly options: FeedOptions,
  ) {
    this.position = start;
    this.page = options.page ?? 200;
    this.maxQueue = options.maxQueue ?? 1_000;
  }

  /**
   * A reader of the rows after `after` (undefined: after the feed's position, i.e. live from now).
   * `counted: false` keeps it out of onReaders (a reader on behalf of readers counted elsewhere).
   */
  open(after?: FeedKey | null, counted = true): FeedReader<T> {
    if (this.closed) throw new Error('feed closed');
    this.readers += 1;
    if (counted) this.options.onReaders?.(1);
    const reader = new FeedReader(this, after === undefined ? this.position : after, counted);
    this.members.add(reader);
    if (this.caughtUp(reader.position)) this.join(reader);
    return reader;
  }

  get readerCount(): number {
    return this.readers;
  }

  /** Ends every reader with `error` (their subscriptions report it); the feed then goes idle and closes. */
  end(error: unknown): void {
    for (const reader of [...this.members]) reader.fail(error);
  }

  /** Something new may have committed: read it (several wake-ups during a read coalesce into one more). */
  wake(): void {
    if (this.closed) return;
    if (this.reading) {
      this.readAgain = true;
      return;
    }
    void this.readNew();
  }

  /** @internal */
  caughtUp(position: FeedKey | null): boolean {
    return this.position === null || (position !== null && compareKeys(position, this.position) >= 0);
  }

  /** @internal */
  join(reader: FeedReader<T>): void {
    this.live.add(reader);
    reader.state = 'live';
  }

  /** @internal A live reader whose queue is full leaves the live set and catches up by itself. */
  fallBehind(reader: FeedReader<T>): void {
    this.live.delete(reader);
    reader.state = 'behind';
  }

  /** @internal */
  detach(reader: FeedReader<T>): void {
    this.live.delete(reader);
    this.members.delete(reader);
    this.readers -= 1;
    if (reader.counted) this.options.onReaders?.(-1);
    if (this.readers === 0 && !this.closed) {
      this.closed = true;
      this.options.onIdle();
    }
  }

  private async readNew(): Promise<void> {
    this.reading = true;
    try {
      do {
        this.readAgain = false;
        for (;;) {
          const rows = await this.source.read(this.position, this.page);
          for (const row of rows) {
            const key = this.source.keyOf(row);
            this.position = key;
            for (const reader of this.live) reader.offer(row, key);
          }
          if (rows.length < this.page || this.closed) break;
        }
      } while (this.readAgain && !this.closed);
    } catch (error) {
      // The live readers end with the error (their subscriptions report it); the feed stays usable for
      // readers catching up and for the next wake-up.
      for (const reader of [...this.live]) reader.fail(error);
    } finally {
      this.reading = false;
    }
  }
}

/**
 * One subscriber's view of a feed, as an async iterator. Consumed by one caller at a time (graphql-js
 * pulls the next row only after it handled the previous one).
 */
export class FeedReader<T> implements AsyncIterableIterator<T> {
  state: 'live' | 'behind' | 'done' = 'behind';
  private readonly queue: T[] = [];
  private head = 0;
  private waiting: (() => void) | null = null;
  private failure: { error: unknown } | null = null;

  constructor(
    private readonly feed: KeysetFeed<T>,
    /** Key of the last row queued for this reader. */
    public position: FeedKey | null,
    readonly counted: boolean,
  ) {}

  [Symbol.asyncIterator]() {
    return this;
  }

  /** @internal A row the feed read; kept only if it is new to this reader. */
  offer(row: T, key: FeedKey): void {
    if (!isAfter(key, this.position)) return;
    if (this.queue.length - this.head >= this.feed.maxQueue) {
      this.feed.fallBehind(this); // it reads from its position once its queue drained
      return;
    }
    this.queue.push(row);
    this.position = key;
    this.notify();
  }

  /** @internal */
  fail(error: unknown): void {
    if (this.state === 'done') return;
    this.failure = { error };
    this.finish();
  }

  async next(): Promise<IteratorResult<T>> {
    for (;;) {
      if (this.head < this.queue.length) {
        const value = this.queue[this.head]!;
        this.queue[this.head] = undefined as T;
        this.head += 1;
        if (this.head === this.queue.length) {
          this.queue.length = 0;
          this.head = 0;
        }
        return { value, done: false };
      }
      if (this.failure) {
        const { error } = this.failure;
        this.failure = null;
        throw error;
      }
      if (this.state === 'done') return { value: undefined, done: true };
      if (this.state === 'behind') {
        await this.catchUp();
        continue;
      }
      await new Promise<void>((resolve) => (this.waiting = resolve));
    }
  }

  async return(): Promise<IteratorResult<T>> {
    this.queue.length = 0;
    this.head = 0;
    this.finish();
    return { value: undefined, done: true };
  }

  /** One step of catching up: join the feed if this reader reached it, else read a page by its own keyset. */
  private async catchUp(): Promise<void> {
    if (this.feed.caughtUp(this.position)) {
      this.feed.join(this);
      return;
    }
    let rows: T[];
    try {
      rows = await this.feed.source.read(this.position, this.feed.page);
    } catch (error) {
      this.fail(error);
      return;
    }
    if (this.state !== 'behind') return; // ended meanwhile
    for (const row of rows) {
      this.queue.push(row);
      this.position = this.feed.source.keyOf(row);
    }
    // A short page means this reader saw everything committed when it read; the loop in next() joins the
    // feed then, or reads again if the feed moved further meanwhile.
  }

  private finish() {
    if (this.state === 'done') return;
    this.state = 'done';
    this.feed.detach(this);
    this.notify();
  }

  private notify() {
    const waiting = this.waiting;
    this.waiting = null;
    waiting?.();
  }
}
