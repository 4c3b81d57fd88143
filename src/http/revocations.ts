import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Authenticator } from '../services/auth.js';
import { credentialsOfRequest } from './credentials.js';

/**
 * Open long-lived connections (WebSockets, event streams) by the API token that authenticated them.
 * They authenticate once, when they open, so revoking a token must close them: at once, on every
 * instance (revocations arrive through LISTEN, see Authenticator.watchRevocations).
 */
export function closeOnRevocation(authenticator: Authenticator) {
  const byToken = new Map<string, Set<() => void>>();
  const stop = authenticator.onRevoked((tokenId) => {
    const closers = byToken.get(tokenId);
    byToken.delete(tokenId);
    for (const close of closers ?? []) close();
  });
  return {
    /** Registers a connection and how to close it; call the returned function once it closed. */
    track(tokenId: string, close: () => void): () => void {
      let closers = byToken.get(tokenId);
      if (!closers) byToken.set(tokenId, (closers = new Set()));
      closers.add(close);
      return () => {
        closers.delete(close);
        if (closers.size === 0 && byToken.get(tokenId) === closers) byToken.delete(tokenId);
      };
    },
    stop,
  };
}

export type Revocations = ReturnType<typeof closeOnRevocation>;

/** Ends an event stream (SSE) when the token it authenticated with is revoked; EventSource then reconnects and gets 401. */
export function closeStreamOnRevocation(revocations: Revocations, authenticator: Authenticator, req: IncomingMessage, res: ServerResponse): void {
  const credentials = credentialsOfRequest(req);
  // Cached: the request's own authentication looks the same token up at the same time.
  authenticator.authenticate(credentials.authorization, credentials.organizationId).then(
    (caller) => {
      if (res.destroyed || res.writableEnded) return;
      res.once('close', revocations.track(caller.tokenId, () => res.destroy()));
    },
    () => {}, // refused: the request itself answers 401/403
  );
}
