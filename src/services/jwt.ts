import { createRemoteJWKSet, errors, jwtVerify, type JWTVerifyGetKey } from 'jose';
import { AppError } from '../errors.js';

// Bearer JSON Web Tokens from an identity provider (Supabase, Auth0, Keycloak: any OIDC issuer), verified
// with jose against the provider's published keys. The token's `email` names one of our users.

export type JwtSettings = {
  jwksUrl: string;
  issuer: string;
  audience: string;
  /** After a successful fetch of the keys, how long before an unknown `kid` may fetch them again. */
  cooldownMs?: number;
};

export type VerifiedClaims = { email: string; expiresAt: number };

const JWT_SHAPE = /^eyJ[\w-]*\.[\w-]+\.[\w-]+$/;

export class JwtVerifier {
  private readonly keys: JWTVerifyGetKey;

  constructor(private readonly settings: JwtSettings) {
    // Keys are cached; a token signed with a key the cache lacks (the provider rotated) fetches them again,
    // at most once per cooldown, so a flood of made-up `kid`s cannot flood the provider.
    this.keys = createRemoteJWKSet(new URL(settings.jwksUrl), {
      cooldownDuration: settings.cooldownMs ?? 5_000,
      cacheMaxAge: 10 * 60_000,
      timeoutDuration: 5_000,
    });
  }

  /** Whether a bearer token is shaped like a JWT (our own API tokens start with `cgw_`). */
  looksLikeJwt(bearer: string): boolean {
    return JWT_SHAPE.test(bearer);
  }

  /** Signature, `exp`, `nbf`, issuer and audience; then the `email` claim. */
  async verify(token: string): Promise<VerifiedClaims> {
    let payload: Awaited<ReturnType<typeof jwtVerify>>['payload'];
    try {
      ({ payload } = await jwtVerify(token, this.keys, {
        issuer: this.settings.issuer,
        audience: this.settings.audience,
        clockTolerance: 5,
      }));
    } catch (error) {
      throw refusal(error);
    }
    const email = payload.email;
    if (typeof email !== 'string' || !email.includes('@')) {
      throw new AppError('UNAUTHENTICATED', 'The token carries no email claim to name a user.');
    }
    if (payload.email_verified === false) throw new AppError('UNAUTHENTICATED', "The token's email is not verified.");
    return { email, expiresAt: typeof payload.exp === 'number' ? payload.exp * 1000 : Number.POSITIVE_INFINITY };
  }
}

/** A failed verification: the token's fault (401), or the provider's keys out of reach (503, retry). */
const TOKEN_FAULTS = [
  errors.JWTClaimValidationFailed,
  errors.JWTExpired,
  errors.JWTInvalid,
  errors.JWSInvalid,
  errors.JWSSignatureVerificationFailed,
  errors.JWKSNoMatchingKey,
  errors.JWKSMultipleMatchingKeys,
  errors.JOSEAlgNotAllowed,
  errors.JOSENotSupported,
];

function refusal(error: unknown): AppError {
  // Anything else (a timeout, a refused connection, a non-200 answer, a key set that is not one) is the
  // provider out of reach, not the caller's fault.
  if (!TOKEN_FAULTS.some((fault) => error instanceof fault)) {
    return new AppError('SERVICE_UNAVAILABLE', "The identity provider's signing keys could not be fetched; retry shortly.");
  }
  const reason =
    error instanceof errors.JWTExpired
      ? 'The token has expired.'
      : error instanceof errors.JWTClaimValidationFailed
        ? `The token's "${error.claim}" claim is not accepted.`
        : error instanceof errors.JWKSNoMatchingKey
          ? 'The token is signed with a key the identity provider does not publish.'
          : 'The token is not a valid signed token of the identity provider.';
  return new AppError('UNAUTHENTICATED', reason);
}
