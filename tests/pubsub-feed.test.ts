import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { compareKeys, KeysetFeed, type FeedKey } from '../src/pubsub/keyset-feed.js';
import { ResultGroup } from '../src/pubsub/shared-results.js';

// The shared feed and the shared results, over an in-memory table whose reads take a random number of
// turns of the event loop: readers joining live or after a cursor, slow readers falling behind and
// catching up by their own reads, wake-ups lost and coalesced. Whatever the interleaving, every reader
// gets exactly the rows after its start, in key order, once each.

type Row = { key: FeedKey; n: number };

function table(random: () => number) {
  const rows: Row[] = [];
  let reads = 0;
  const turns = async () => {
    for (let i = Math.floor(random() * 3); i > 0; i -= 1) await new Promise((resolve) => setImmediate(resolve));
  };
  return {
    rows,
    get reads() {
      return reads;
    },
    /** Commits n rows with increasing keys (some sharing a millisecond, ordered by id then). */
    commit(n: number) {
      for (let i = 0; i < n; i += 1) {
        const at = new Date(1_700_000_000_000 + Math.floor(rows.length / 2));
        rows.push({ key: { at, id: `00000000-0000-4000-8000-${String(rows.length).padStart(12, '0')}` }, n: rows.length });
      }
    },
    source: {
      async read(after: FeedKey | null, limit: number) {
        reads += 1;
        const snapshot = rows.length; // what had committed when the statement ran
        await turns();
        return rows.slice(0, snapshot).filter((row) => after === null || compareKeys(row.key, after) > 0).slice(0, limit);
      },
      keyOf: (row: Row) => row.key,
    },
  };
}

/** A deterministic random source for one fast-check run. */
const seeded = (seed: number) => () => {
  seed = (seed * 1_103_515_245 + 12_345) % 2_147_483_648;
  return seed / 2_147_483_648;
};

const step = fc.oneof(
  fc.record({ kind: fc.constant('commit' as const), n: fc.integer({ min: 1, max: 7 }), wake: fc.boolean() }),
  fc.record({ kind: fc.constant('open' as const), from: fc.option(fc.nat(), { nil: undefined }), slow: fc.boolean() }),
  fc.record({ kind: fc.constant('close' as const), which: fc.nat() }),
  fc.record({ kind: fc.constant('wait' as const), turns: fc.integer({ min: 1, max: 4 }) }),
);

describe('KeysetFeed', () => {
  it('gives every reader the rows after its start, in order, once, whatever the interleaving', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(step, { minLength: 1, maxLength: 30 }), fc.integer(), async (steps, seed) => {
        const random = seeded(seed >>> 0);
        const db = table(random);
        db.commit(3);
        let idle = false;
        const feed = new KeysetFeed(db.source, db.rows.at(-1)!.key, { onIdle: () => (idle = true), page: 4, maxQueue: 3 });
        const keep = feed.open(); // holds the feed open until the end
        const readers: { start: number; got: number[]; stop: () => Promise<unknown>; open: boolean }[] = [];
        const consume = (iterator: AsyncIterator<Row>, got: number[], slow: boolean) =>
          (async () => {
            for (;;) {
              const next = await iterator.next();
              if (next.done) return;
              got.push(next.value.n);
              if (slow) for (let i = 0; i < 3; i += 1) await new Promise((resolve) => setImmediate(resolve));
            }
          })();
        void consume(keep, [], false);
        for (const s of steps) {
          if (s.kind === 'commit') {
            db.commit(s.n);
            if (s.wake) feed.wake(); // a lost wake-up is healed by a later one
          } else if (s.kind === 'open') {
            const from = s.from === undefined ? undefined : s.from % db.rows.length;
            const reader = feed.open(from === undefined ? undefined : db.rows[from]!.key);
            const start = from === undefined ? db.rows.findIndex((row) => compareKeys(row.key, reader.position!) === 0) : from;
            const entry = { start, got: [] as number[], stop: () => reader.return(), open: true };
            readers.push(entry);
            void consume(reader, entry.got, s.slow);
          } else if (s.kind === 'close' && readers.length > 0) {
            const entry = readers[s.which % readers.length]!;
            entry.open = false;
            await entry.stop();
          } else if (s.kind === 'wait') {
            for (let i = 0; i < s.turns; i += 1) await new Promise((resolve) => setImmediate(resolve));
          }
        }
        feed.wake();
        const last = db.rows.length - 1;
        const deadline = Date.now() + 5_000;
        while (readers.some((r) => r.open && (r.got.at(-1) ?? r.start) < last)) {
          if (Date.now() > deadline) throw new Error('readers did not catch up');
          await new Promise((resolve) => setTimeout(resolve, 1));
        }
        for (const reader of readers) {
          const expected = Array.from({ length: last - reader.start }, (_, i) => reader.start + 1 + i);
          // A closed reader got a prefix of its rows; an open one got all of them.
          expect(reader.got).toEqual(reader.open ? expected : expected.slice(0, reader.got.length));
        }
        for (const reader of readers) await reader.stop();
        expect(idle).toBe(false);
        await keep.return();
        expect(idle).toBe(true);
        expect(feed.readerCount).toBe(0);
      }),
      { numRuns: 150 },
    );
  });

  it('reads once per wake-up for all live readers, however many', async () => {
    const db = table(() => 0);
    db.commit(1);
    const feed = new KeysetFeed(db.source, db.rows[0]!.key, { onIdle: () => {} });
    const readers = Array.from({ length: 500 }, () => feed.open());
    const firsts = readers.map((reader) => reader.next());
    db.commit(1);
    const before = db.reads;
    feed.wake();
    const rows = await Promise.all(firsts);
    expect(db.reads - before).toBe(1);
    // The same row object for everyone: nothing copied per reader.
    expect(new Set(rows.map((row) => row.value)).size).toBe(1);
    await Promise.all(readers.map((reader) => reader.return()));
  });
});

describe('ResultGroup', () => {
  it('writes each result once serialized to every member; a member too slow continues on its own stream without gap or repeat', async () => {
    const db = table(() => 0);
    db.commit(2);
    const feed = new KeysetFeed(db.source, db.rows.at(-1)!.key, { onIdle: () => {} });
    let lastKey: FeedKey | null = null;
    const executions: number[] = [];
    // The shared "execution": one result per row, remembering the row's key as the resolver hook does.
    const execute = (reader: AsyncIterator<Row>): AsyncIterator<string> => ({
      async next() {
        const next = await reader.next();
        if (next.done) return { value: undefined, done: true };
        lastKey = next.value.key;
        executions.push(next.value.n);
        return { value: `r${next.value.n}`, done: false };
      },
      return: async () => (await reader.return!(), { value: undefined, done: true }),
    });
    let serialized = 0;
    let idle = false;
    const start = feed.open(undefined, false);
    const group = new ResultGroup<string>(execute(start), start.position, () => lastKey, {
      serialize: (result) => {
        serialized += 1;
        return result.toUpperCase();
      },
      onIdle: () => (idle = true),
    });
    const fast: string[] = [];
    const slowWritten: string[] = [];
    const slowOwn: string[] = [];
    const ownStream = async (after: FeedKey | null) => {
      const reader = feed.open(after);
      const own: AsyncIterator<string> = {
        next: async () => {
          const next = await reader.next();
          return next.done ? { value: undefined, done: true } : { value: `R${next.value.n}`, done: false };
        },
        return: async () => (await reader.return(), { value: undefined, done: true }),
      };
      return own;
    };
    const a = group.join((text) => (fast.push(text), true), ownStream);
    // Its connection takes two results, then stays full.
    const b = group.join((text) => slowWritten.length < 2 && (slowWritten.push(text), true), ownStream);
    void (async () => {
      for (;;) {
        const next = await b.next();
        if (next.done) return;
        slowOwn.push(next.value);
      }
    })();
    for (let i = 0; i < 4; i += 1) {
      db.commit(2);
      feed.wake();
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    const deadline = Date.now() + 5_000;
    while ((fast.length < 8 || slowWritten.length + slowOwn.length < 8) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    const expected = Array.from({ length: 8 }, (_, i) => `R${i + 2}`);
    expect(fast).toEqual(expected);
    expect([...slowWritten, ...slowOwn]).toEqual(expected);
    expect(slowWritten).toHaveLength(2);
    // Executed and serialized once per row for the group, whatever the members.
    expect(executions).toEqual([2, 3, 4, 5, 6, 7, 8, 9]);
    expect(serialized).toBe(8);
    await a.return();
    await b.return();
    expect(idle).toBe(true);
  });
});
