import type { IncomingMessage, ServerResponse } from 'node:http';
import { GraphQLError } from 'graphql';
import type { Plugin as YogaPlugin } from 'graphql-yoga';
import { RateLimiterMemory, RateLimiterRes } from 'rate-limiter-flexible';
import { hashApiToken } from '../services/auth.js';
import { sendJson } from './respond.js';

// Per-token rate limiting for /graphql (HTTP and WebSocket operations) and /api. Twilio's webhooks,
// /health and short links never pass through here: Twilio does not retry a 429, so refusing a webhook
// would lose a message. Each token has its own fixed one-minute window in memory (per instance), so
// one token's flood costs others nothing but a Map lookup.

export type RateDecision = { allowed: true } | { allowed: false; retryAfterSeconds: number; limit: number };

/** Inbound messages per minute from one sender to one number above which they are flagged (never refused). */
export const INBOUND_FLOOD_PER_MINUTE = 60;

export class RateLimiter {
  private readonly limiter: RateLimiterMemory | null;
  private readonly inbound = new RateLimiterMemory({ points: INBOUND_FLOOD_PER_MINUTE, duration: 60 });

  constructor(readonly perMinute: number) {
    this.limiter = perMinute > 0 ? new RateLimiterMemory({ points: perMinute, duration: 60 }) : null;
  }

  /**
   * Counts a stored inbound message of one sender to one number. True exactly once per minute, when the
   * sender crosses the threshold: the caller flags it (logs); the message itself is always kept.
   */
  async inboundFlood(to: string, from: string): Promise<boolean> {
    try {
      await this.inbound.consume(`${to}<${from}`);
      return false;
    } catch (rejection) {
      if (!(rejection instanceof RateLimiterRes)) throw rejection;
      return rejection.consumedPoints === INBOUND_FLOOD_PER_MINUTE + 1;
    }
  }

  /** Spends `points` from the key's window. */
  async take(key: string, points = 1): Promise<RateDecision> {
    if (!this.limiter || points <= 0) return { allowed: true };
    try {
      await this.limiter.consume(key, points);
      return { allowed: true };
    } catch (rejection) {
      if (!(rejection instanceof RateLimiterRes)) throw rejection;
      return { allowed: false, retryAfterSeconds: Math.max(1, Math.ceil(rejection.msBeforeNext / 1000)), limit: this.perMinute };
    }
  }
}

/** The bucket of a request: its bearer token (hashed, never kept in clear), or its address without one. */
export function rateLimitKey(authorization: string | null | undefined, address: string | undefined): string {
  const token = /^Bearer\s+(\S+)\s*$/i.exec(authorization ?? '')?.[1];
  return token ? `token:${hashApiToken(token)}` : `ip:${address ?? 'unknown'}`;
}

const message = (decision: Extract<RateDecision, { allowed: false }>) =>
  `Rate limit of ${decision.limit} requests per minute exceeded for this token; retry in ${decision.retryAfterSeconds} s.`;

function rateLimitedError(decision: Extract<RateDecision, { allowed: false }>): GraphQLError {
  return new GraphQLError(message(decision), {
    extensions: {
      code: 'RATE_LIMITED',
      retryAfterSeconds: decision.retryAfterSeconds,
      http: { status: 429, headers: { 'retry-after': String(decision.retryAfterSeconds) } },
    },
  });
}

/**
 * Counts one HTTP request to /graphql or /api; when over the limit, answers 429 with Retry-After in
 * the surface's own error shape and returns false. Preflights (no token) are not counted.
 */
export async function admitRequest(limiter: RateLimiter, req: IncomingMessage, res: ServerResponse, surface: 'graphql' | 'rest'): Promise<boolean> {
  if (req.method === 'OPTIONS') return true;
  const decision = await limiter.take(rateLimitKey(req.headers.authorization, req.socket.remoteAddress));
  if (decision.allowed) return true;
  req.resume(); // drain whatever body follows, keep the connection usable
  const headers = { 'retry-after': String(decision.retryAfterSeconds) };
  if (surface === 'rest') {
    sendJson(res, 429, { success: false, code: 'RATE_LIMITED', message: message(decision) }, headers);
  } else {
    sendJson(res, 429, { errors: [{ message: message(decision), extensions: { code: 'RATE_LIMITED', retryAfterSeconds: decision.retryAfterSeconds } }] }, headers);
  }
  return false;
}

type WsContext = { connectionParams?: Record<string, unknown>; socket?: unknown; req?: IncomingMessage };

/**
 * The GraphQL side: every operation after the first of a batched request costs one more request, and
 * every operation over graphql-ws (one socket can carry any number) costs one. HTTP requests were
 * counted once already by admitRequest.
 */
export function useRateLimit(limiter: RateLimiter): YogaPlugin {
  const wsKey = (context: WsContext) => {
    const params = context.connectionParams ?? {};
    const authorization = [params.authorization, params.Authorization].find((value): value is string => typeof value === 'string');
    return rateLimitKey(authorization, context.req?.socket.remoteAddress);
  };
  const isWebSocket = (context: unknown): context is WsContext =>
    typeof context === 'object' && context !== null && 'socket' in context && 'connectionParams' in context;

  return {
    onRequestParse({ request }) {
      return {
        async onRequestParseDone({ requestParserResult }) {
          if (!Array.isArray(requestParserResult) || requestParserResult.length <= 1) return;
          const key = rateLimitKey(request.headers.get('authorization'), undefined);
          const decision = await limiter.take(key, requestParserResult.length - 1);
          if (!decision.allowed) throw rateLimitedError(decision);
        },
      };
    },
    async onExecute({ args, setResultAndStopExecution }) {
      if (!isWebSocket(args.contextValue)) return;
      const decision = await limiter.take(wsKey(args.contextValue));
      if (!decision.allowed) setResultAndStopExecution({ errors: [rateLimitedError(decision)] });
    },
    async onSubscribe({ args, setResultAndStopExecution }) {
      if (!isWebSocket(args.contextValue)) return;
      const decision = await limiter.take(wsKey(args.contextValue));
      if (!decision.allowed) setResultAndStopExecution({ errors: [rateLimitedError(decision)] });
    },
  };
}
