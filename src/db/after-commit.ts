import type { Db, DbOrTx } from './client.js';

// Work that must wait for a transaction to commit (telling other instances about a change through a
// channel outside PostgreSQL, such as Redis). Each transaction opened on a Db prepared by
// runAfterCommit keeps its hooks here; they run once it has committed, never when it rolls back.

type Open = { root: Db; hooks: (() => void)[] };

const open = new WeakMap<object, Open>();
const prepared = new WeakSet<Db>();

/** Makes `db.transaction` run the hooks registered on its transactions once they commit. */
export function runAfterCommit(db: Db): void {
  if (prepared.has(db)) return; // several instances in one process (tests) share one database handle
  prepared.add(db);
  const transaction = db.transaction.bind(db);
  db.transaction = (async (work: (tx: never) => Promise<unknown>, config?: never) => {
    const hooks: (() => void)[] = [];
    const result = await transaction(async (tx) => {
      open.set(tx, { root: db, hooks });
      return work(tx as never);
    }, config);
    for (const hook of hooks) hook();
    return result;
  }) as Db['transaction'];
}

/** Runs `hook` after the transaction `tx` commits (at once when `tx` is no transaction of ours). */
export function afterCommit(tx: DbOrTx, hook: () => void): void {
  const current = open.get(tx);
  if (current) current.hooks.push(hook);
  else hook();
}

/** The database a transaction was opened on (itself for a Db). */
export function rootOf(tx: DbOrTx): DbOrTx {
  return open.get(tx)?.root ?? tx;
}
