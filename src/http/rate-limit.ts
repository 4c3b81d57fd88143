import type { IncomingMessage, ServerResponse } from 'node:http';
import { GraphQLError } from 'graphql';
import type { Plugin as YogaPlugin } from 'graphql-yoga';
import type { Redis } from 'ioredis';
import { RateLimiterMemory, RateLimiterRedis, RateLimiterRes, type RateLimiterAbstract } from 'rate-limiter-flexible';
import { bearerToken, hashApiToken } from '../services/auth.js';
import { credentialsOfConnectionParams } from './credentials.js';
import { sendJson } from './respond.js';

// Per-token rate limiting for /graphql (HTTP and WebSocket operations) and /api. Twilio's webhooks,
// /health and short links never pass through here: Twilio does not retry a 429, so refusing a webhook
// would lose a message. Each token has its own fixed one-minute window in memory (per instance), so
// one token's flood costs others nothing but a Map lookup. With Redis (REDIS_URL) the windows live there,
// shared by every instance; while Redis is away each instance counts in its own memory again.

export type RateDecision = { allowed: true } | { allowed: false; retryAfterSeconds: number; limit: number };

/** Inbound messages per minute from one sender to one number above which they are flagged (never refused). */
export const INBOUND_FLOOD_PER_MINUTE = 60;

export type RateLimiterOptions = {
  /** Failed authentications per client address per minute before the address is refused (0: no limit). */
  authFailuresPerMinute?: number;
  /** Whether a request's Authorization carries a token already verified (cached): such requests still pass. */
  isVerifiedToken?: (authorization: string | undefined) => boolean;
  /** Shared windows in Redis (per token and per address), with per-instance memory while it is away. */
  redis?: Redis;
};

/** A one-minute window of `points`: in Redis when given (falling back to memory), else in memory. */
function window(points: number, keyPrefix: string, redis: Redis | undefined): RateLimiterAbstract {
  const memory = new RateLimiterMemory({ points, duration: 60 });
  if (!redis) return memory;
  return new RateLimiterRedis({ storeClient: redis, points, duration: 60, keyPrefix, rejectIfRedisNotReady: true, insuranceLimiter: memory });
}

export class RateLimiter {
  private readonly limiter: RateLimiterAbstract | null;
  private readonly inbound = new RateLimiterMemory({ points: INBOUND_FLOOD_PER_MINUTE, duration: 60 });
  // Per-token budgets cannot stop a flood of made-up tokens (each would get its own budget, and each costs
  // a token lookup): failures are also counted per client address.
  private readonly authFailures: RateLimiterAbstract | null;
  readonly authFailuresPerMinute: number;
  private readonly isVerifiedToken: (authorization: string | undefined) => boolean;

  constructor(
    readonly perMinute: number,
    options: RateLimiterOptions = {},
  ) {
    this.limiter = perMinute > 0 ? window(perMinute, 'gw:rate', options.redis) : null;
    this.authFailuresPerMinute = options.authFailuresPerMinute ?? 0;
    this.authFailures = this.authFailuresPerMinute > 0 ? window(this.authFailuresPerMinute, 'gw:auth-failures', options.redis) : null;
    this.isVerifiedToken = options.isVerifiedToken ?? (() => false);
  }

  /**
   * Refuses a request from an address that failed authentication too often this minute, unless it carries a
   * token verified already: an attacker guessing tokens from behind a shared address does not lock out
   * the people working there.
   */
  async admitAddress(address: string | undefined, authorization: string | undefined): Promise<RateDecision> {
    if (!this.authFailures) return { allowed: true };
    const spent = await this.authFailures.get(`auth:${address ?? 'unknown'}`);
    if (!spent || spent.consumedPoints < this.authFailuresPerMinute || this.isVerifiedToken(authorization)) return { allowed: true };
    return { allowed: false, retryAfterSeconds: Math.max(1, Math.ceil(spent.msBeforeNext / 1000)), limit: this.authFailuresPerMinute };
  }

  /** Counts one failed authentication (an answered 401) from the address. */
  async recordAuthFailure(address: string | undefined): Promise<void> {
    if (!this.authFailures) return;
    await this.authFailures.consume(`auth:${address ?? 'unknown'}`).catch((rejection: unknown) => {
      if (!(rejection instanceof RateLimiterRes)) throw rejection;
    });
  }

  /**
   * Counts an inbound message of one sender to one number. `flood` for every message over the threshold
   * this minute (the caller flags them), `first` for the one that crossed it (the caller logs it once);
   * the message itself is always kept.
   */
  async inboundFlood(to: string, from: string): Promise<{ flood: boolean; first: boolean }> {
    try {
      await this.inbound.consume(`${to}<${from}`);
      return { flood: false, first: false };
    } catch (rejection) {
      if (!(rejection instanceof RateLimiterRes)) throw rejection;
      return { flood: true, first: rejection.consumedPoints === INBOUND_FLOOD_PER_MINUTE + 1 };
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
  const token = bearerToken(authorization);
  return token ? `token:${hashApiToken(token)}` : `ip:${address ?? 'unknown'}`;
}

const message = (decision: Extract<RateDecision, { allowed: false }>) =>
  `Rate limit of ${decision.limit} requests per minute exceeded for this token; retry in ${decision.retryAfterSeconds} s.`;
const addressMessage = (decision: Extract<RateDecision, { allowed: false }>) =>
  `More than ${decision.limit} failed authentications per minute from this address; retry in ${decision.retryAfterSeconds} s.`;

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
  const address = req.socket.remoteAddress;
  const byAddress = await limiter.admitAddress(address, req.headers.authorization);
  if (!byAddress.allowed) return refuse(res, req, surface, byAddress, addressMessage(byAddress));
  const decision = await limiter.take(rateLimitKey(req.headers.authorization, address));
  if (!decision.allowed) return refuse(res, req, surface, decision, message(decision));
  if (limiter.authFailuresPerMinute > 0) {
    res.once('finish', () => {
      if (res.statusCode === 401) void limiter.recordAuthFailure(address);
    });
  }
  return true;
}

function refuse(res: ServerResponse, req: IncomingMessage, surface: 'graphql' | 'rest', decision: Extract<RateDecision, { allowed: false }>, text: string): false {
  req.resume(); // drain whatever body follows, keep the connection usable
  const headers = { 'retry-after': String(decision.retryAfterSeconds) };
  if (surface === 'rest') {
    sendJson(res, 429, { success: false, code: 'RATE_LIMITED', message: text }, headers);
  } else {
    sendJson(res, 429, { errors: [{ message: text, extensions: { code: 'RATE_LIMITED', retryAfterSeconds: decision.retryAfterSeconds } }] }, headers);
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
    return rateLimitKey(credentialsOfConnectionParams(context.connectionParams).authorization, context.req?.socket.remoteAddress);
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
