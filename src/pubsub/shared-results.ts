import { compareKeys, type FeedKey } from './keyset-feed.js';

// One subscription's results handed to many subscribers: the subscribers of the same operation (same
// document, variables and organization) get the very same results, so each event is executed and
// serialized once for all of them, then written to each subscriber's connection. Each result comes with
// the key of the row it was made from; a subscriber whose connection cannot take more (a slow client)
// leaves the group and continues on its own stream after the last key it got, so it misses nothing and
// the others never wait for it.

export type ResultGroupOptions<R, S> = {
  /** What is written for a result (made once per result, for every member). */
  serialize: (result: R) => S;
  /** Called once, when the last member leaves or the shared stream ends. */
  onIdle: () => void;
  /** Called with +1 / -1 as members come and go. */
  onMembers?: (delta: number) => void;
};

/** Writes a serialized result to one subscriber; false when its connection is too far behind to take it. */
export type MemberSink<S> = (serialized: S) => boolean;

/** A member's own stream of the rows after `after` (null: from the first), or a single result (an error). */
export type ResumeOwn<R> = (after: FeedKey | null) => Promise<AsyncIterator<R> | R>;

export class ResultGroup<R, S = string> {
  private readonly members = new Set<GroupMember<R, S>>();
  closed = false;

  constructor(
    private readonly results: AsyncIterator<R>,
    /** Key of the row the shared stream started after (null: it starts at the first row). */
    private position: FeedKey | null,
    /** Key of the row the result just produced was made from. */
    private readonly lastKey: () => FeedKey | null,
    private readonly options: ResultGroupOptions<R, S>,
  ) {
    void this.pump();
  }

  join(sink: MemberSink<S>, resume: ResumeOwn<R>): GroupMember<R, S> {
    const member = new GroupMember<R, S>(this, this.position, sink, resume);
    this.members.add(member);
    this.options.onMembers?.(1);
    return member;
  }

  /** @internal */
  leave(member: GroupMember<R, S>): void {
    if (!this.members.delete(member)) return;
    this.options.onMembers?.(-1);
    if (this.members.size === 0) this.close();
  }

  private close() {
    if (this.closed) return;
    this.closed = true;
    this.options.onIdle();
    void this.results.return?.();
  }

  private async pump(): Promise<void> {
    try {
      for (;;) {
        const next = await this.results.next();
        if (next.done) break;
        const key = this.lastKey();
        if (key) this.position = key;
        const serialized = this.options.serialize(next.value);
        for (const member of this.members) member.offer(serialized, key);
      }
      for (const member of [...this.members]) member.end(null);
    } catch (error) {
      for (const member of [...this.members]) member.end({ error });
    } finally {
      this.close();
    }
  }
}

/**
 * One subscriber of a group, as the async iterator its transport consumes: while in the group it yields
 * nothing (results go straight to its sink); it ends when the group's stream ends, and once behind it
 * yields its own stream's results.
 */
export class GroupMember<R, S = string> implements AsyncIterableIterator<R> {
  private waiting: (() => void) | null = null;
  private ended: { failure: { error: unknown } | null } | null = null;
  private behind = false;
  /** Its own stream, once it fell behind. */
  private own: Promise<AsyncIterator<R> | R> | null = null;

  constructor(
    private readonly group: ResultGroup<R, S>,
    /** Key of the last row whose result was written for this member. */
    private position: FeedKey | null,
    private readonly sink: MemberSink<S>,
    private readonly resume: ResumeOwn<R>,
  ) {}

  [Symbol.asyncIterator]() {
    return this;
  }

  /** @internal */
  offer(serialized: S, key: FeedKey | null): void {
    if (key && this.position && compareKeys(key, this.position) <= 0) return;
    if (!this.sink(serialized)) {
      this.behind = true;
      this.group.leave(this);
      this.notify();
      return;
    }
    if (key) this.position = key;
  }

  /** @internal The shared stream ended (failure: with an error). */
  end(failure: { error: unknown } | null): void {
    if (this.ended || this.behind) return;
    this.ended = { failure };
    this.group.leave(this);
    this.notify();
  }

  async next(): Promise<IteratorResult<R>> {
    for (;;) {
      if (this.ended) {
        const { failure } = this.ended;
        this.ended = { failure: null };
        if (failure) throw failure.error;
        return { value: undefined, done: true };
      }
      if (this.behind) return this.nextOwn();
      await new Promise<void>((resolve) => (this.waiting = resolve));
    }
  }

  async return(): Promise<IteratorResult<R>> {
    if (!this.ended) this.ended = { failure: null };
    this.group.leave(this);
    this.notify();
    const own = this.own;
    this.own = null;
    if (own) {
      const stream = await own.catch(() => null);
      if (stream && isIterator<R>(stream)) await stream.return?.();
    }
    return { value: undefined, done: true };
  }

  /** Its own stream from the last key it got; what was written before is already on its connection, in order. */
  private async nextOwn(): Promise<IteratorResult<R>> {
    this.own ??= this.resume(this.position);
    const stream = await this.own;
    if (this.ended) return { value: undefined, done: true }; // returned meanwhile
    if (!isIterator<R>(stream)) {
      this.ended = { failure: null };
      return { value: stream, done: false };
    }
    return stream.next();
  }

  private notify() {
    const waiting = this.waiting;
    this.waiting = null;
    waiting?.();
  }
}

const isIterator = <R>(value: AsyncIterator<R> | R): value is AsyncIterator<R> =>
  typeof value === 'object' && value !== null && typeof (value as AsyncIterator<R>).next === 'function';
