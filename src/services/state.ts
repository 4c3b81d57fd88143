// The in-memory state services keep between calls (group-commit batchers, the inbound route cache, the
// shared subscription feeds), owned by one gateway instance instead of by the modules that use it. The
// composition root makes one ServiceState, so closing the instance can wait for what is in flight and
// forget the rest, and an operator (or a test) can see what each part holds.

import { AppError } from '../errors.js';

/** A part of the state that has work in flight or things held: the instance drains it before it closes the database. */
export interface StatePart {
  /** Waits for the work in flight and lets go of what is held; later calls are refused or start over. */
  drain(): Promise<void>;
  /** How much the part holds right now (queued items, cached entries, open feeds), for inspection. */
  held(): number;
}

/** A map a service keeps as a cache: draining forgets it. */
export class CacheMap<K, V> extends Map<K, V> implements StatePart {
  held(): number {
    return this.size;
  }

  async drain(): Promise<void> {
    this.clear();
  }
}

/** A typed name for one part, declared by the module that uses it. */
export type StateKey<T extends StatePart> = { readonly name: string; readonly _part?: T };

export function stateKey<T extends StatePart>(name: string): StateKey<T> {
  return { name };
}

export class ServiceState {
  private readonly parts = new Map<StateKey<StatePart>, StatePart>();
  private draining: Promise<void> | null = null;

  /**
   * The part for `key`, made by `create` on first use. Work already in flight keeps its parts while the
   * instance drains; a part first made after that is drained at once (a batcher then refuses new items).
   */
  get<T extends StatePart>(key: StateKey<T>, create: () => T): T {
    let part = this.parts.get(key) as T | undefined;
    if (!part) {
      part = create();
      this.parts.set(key, part);
      if (this.draining) void part.drain();
    }
    return part;
  }

  /** What each part holds, by name. */
  inspect(): Record<string, number> {
    const parts: Record<string, number> = {};
    for (const [key, part] of this.parts) parts[key.name] = part.held();
    return parts;
  }

  /** Drains every part (once; later calls wait for the same drain). */
  drain(): Promise<void> {
    this.draining ??= Promise.allSettled([...this.parts.values()].map((part) => part.drain())).then(() => {});
    return this.draining;
  }
}

/** What a new call gets from a part once the instance has begun to close. */
export function shuttingDown(): AppError {
  return new AppError('SERVICE_UNAVAILABLE', 'This gateway instance is shutting down; try again shortly.');
}
