import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Authenticator, Caller } from '../services/auth.js';
import { credentialsOfRequest } from './credentials.js';

/**
 * Open long-lived connections (WebSockets, event streams) by the API token that authenticated them.
 * They authenticate once, when they open, so revoking a token must close them: at once, on every
 * instance (revocations arrive through LISTEN, see Authenticator.watchRevocations).
 */
export function closeOnRevocation(authenticator: Authenticator) {
  // Keyed by token id, and by `user:<id>`: a user whose memberships changed (removed, another role) opens
  // their connections again, with what they may do now.
  const byKey = new Map<string, Set<(why: CloseWhy) => void>>();
  const closeAll = (key: string, why: CloseWhy) => {
    const closers = byKey.get(key);
    byKey.delete(key);
    for (const close of closers ?? []) close(why);
  };
  const stop = authenticator.onRevoked((change) => {
    if (change.tokenId !== undefined) closeAll(change.tokenId, 'revoked');
    if (change.userId !== undefined) closeAll(`user:${change.userId}`, 'membership-changed');
  });
  const add = (key: string, close: (why: CloseWhy) => void) => {
    let closers = byKey.get(key);
    if (!closers) byKey.set(key, (closers = new Set()));
    closers.add(close);
    return () => {
      closers.delete(close);
      if (closers.size === 0 && byKey.get(key) === closers) byKey.delete(key);
    };
  };
  return {
    /** Registers a connection and how to close it; call the returned function once it closed. */
    track(caller: Pick<Caller, 'tokenId' | 'userId'>, close: (why: CloseWhy) => void): () => void {
      let closed = false;
      const once = (why: CloseWhy) => {
        if (closed) return;
        closed = true;
        close(why);
      };
      const untrackToken = add(caller.tokenId, once);
      const untrackUser = caller.userId === null ? () => {} : add(`user:${caller.userId}`, once);
      return () => {
        untrackToken();
        untrackUser();
      };
    },
    stop,
  };
}

export type Revocations = ReturnType<typeof closeOnRevocation>;

/** revoked: the token will never work again; membership-changed: the user may reconnect with what they may do now. */
export type CloseWhy = 'revoked' | 'membership-changed';

/** Ends an event stream (SSE) when the token it authenticated with is revoked; EventSource then reconnects and gets 401. */
export function closeStreamOnRevocation(revocations: Revocations, authenticator: Authenticator, req: IncomingMessage, res: ServerResponse): void {
  const credentials = credentialsOfRequest(req);
  // Cached: the request's own authentication looks the same token up at the same time.
  authenticator.authenticate(credentials.authorization, credentials.organizationId).then(
    (caller) => {
      if (res.destroyed || res.writableEnded) return;
      res.once('close', revocations.track(caller, () => res.destroy()));
    },
    () => {}, // refused: the request itself answers 401/403
  );
}
