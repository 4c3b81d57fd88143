import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import type { LookupFunction } from 'node:net';
import { isIP } from 'node:net';
import { Webhook } from 'standardwebhooks';
import type { WebhookConfig } from '../../config.js';
import { AppError } from '../../errors.js';
import { checkedAddresses, checkUrlShape, type LookupAll } from './url-policy.js';

// One POST of a webhook attempt: signed (Standard Webhooks), redirects not followed, every address the
// connection uses checked (url-policy.ts), WEBHOOK_TIMEOUT_MS overall. One sender per dispatcher: it keeps
// its connections alive between attempts (its own agents, closed with it) and a signer per secret.

const RESPONSE_EXCERPT_BYTES = 1024;
/** Signers and parsed URLs kept; past this (endpoints come and go) the cache starts over. */
const CACHED = 1_000;

export type Attempt = { id: string; body: string; url: string; secret: string; previousSecret: string | null };

export type AttemptResult = { ok: boolean; httpStatus: number | null; durationMs: number; error: string | null; response: string | null };

export class WebhookSender {
  private readonly httpAgent = new HttpAgent({ keepAlive: true, scheduling: 'lifo' });
  private readonly httpsAgent = new HttpsAgent({ keepAlive: true, scheduling: 'lifo' });
  private readonly signers = new Map<string, Webhook>();
  private readonly urls = new Map<string, URL | Error>();
  private readonly lookup: LookupFunction;

  constructor(
    private readonly config: WebhookConfig,
    private readonly lookupAll: LookupAll,
  ) {
    // The connection's own lookup: a name is checked each time a connection is made to it.
    this.lookup = (hostname, options, callback) => {
      checkedAddresses(hostname, config, lookupAll).then(
        (addresses) => {
          if ((options as { all?: boolean }).all) (callback as (e: null, a: typeof addresses) => void)(null, addresses);
          else callback(null, addresses[0]!.address, addresses[0]!.family);
        },
        (error: Error) => callback(error as NodeJS.ErrnoException, '', 0),
      );
    };
  }

  /** The `webhook-signature` header: v1 signatures by the secret, and by the previous one during a rotation. */
  signatureHeader(attempt: Pick<Attempt, 'id' | 'body' | 'secret' | 'previousSecret'>, at: Date): string {
    const signature = this.signerFor(attempt.secret).sign(attempt.id, at, attempt.body);
    return attempt.previousSecret ? `${signature} ${this.signerFor(attempt.previousSecret).sign(attempt.id, at, attempt.body)}` : signature;
  }

  /** Signed with the standardwebhooks package (the contract); its Webhook decodes the whsec_ key once, so one is kept per secret. */
  private signerFor(secret: string): Webhook {
    let signer = this.signers.get(secret);
    if (!signer) {
      if (this.signers.size >= CACHED) this.signers.clear();
      signer = new Webhook(secret);
      this.signers.set(secret, signer);
    }
    return signer;
  }

  /** The URL's shape and, for an address written in it, the address (a lookup never sees it): checked once per URL. */
  private async checkedUrl(raw: string): Promise<URL> {
    let checked = this.urls.get(raw);
    if (!checked) {
      try {
        checked = checkUrlShape(raw, this.config);
        if (isIP(checked.hostname.replace(/^\[|\]$/g, ''))) await checkedAddresses(checked.hostname, this.config, this.lookupAll);
      } catch (error) {
        checked = error instanceof Error ? error : new Error(String(error));
      }
      if (this.urls.size >= CACHED) this.urls.clear();
      this.urls.set(raw, checked);
    }
    if (checked instanceof Error) throw checked;
    return checked;
  }

  async send(attempt: Attempt): Promise<AttemptResult> {
    const started = Date.now();
    const done = (partial: Omit<AttemptResult, 'durationMs'>): AttemptResult => ({ ...partial, durationMs: Date.now() - started });
    let url: URL;
    try {
      url = await this.checkedUrl(attempt.url);
    } catch (error) {
      return done({ ok: false, httpStatus: null, error: error instanceof AppError ? error.message : String(error), response: null });
    }
    const at = new Date();
    const headers = {
      'content-type': 'application/json',
      'user-agent': 'conversations-gateway-webhooks/1',
      'webhook-id': attempt.id,
      'webhook-timestamp': String(Math.floor(at.getTime() / 1000)),
      'webhook-signature': this.signatureHeader(attempt, at),
    };
    const https = url.protocol === 'https:';
    const send = https ? httpsRequest : httpRequest;
    const { timeoutMs } = this.config;
    return new Promise<AttemptResult>((resolve) => {
      let settled = false;
      // One timer for the whole attempt (connect, send, answer): cheaper than an AbortSignal per request.
      const timer = setTimeout(() => {
        finish({ ok: false, httpStatus: null, error: `No answer within ${timeoutMs} ms`, response: null });
        req.destroy();
      }, timeoutMs);
      const finish = (result: Omit<AttemptResult, 'durationMs'>) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resolve(done(result));
      };
      const req = send(url, { method: 'POST', headers, lookup: this.lookup, agent: https ? this.httpsAgent : this.httpAgent }, (res: IncomingMessage) => {
        const chunks: Buffer[] = [];
        let size = 0;
        const status = res.statusCode ?? 0;
        const end = () => {
          const response = Buffer.concat(chunks).subarray(0, RESPONSE_EXCERPT_BYTES).toString('utf8');
          const ok = status >= 200 && status < 300;
          finish({ ok, httpStatus: status, error: ok ? null : `HTTP ${status}`, response });
        };
        res.on('data', (chunk: Buffer) => {
          if (size < RESPONSE_EXCERPT_BYTES) chunks.push(chunk);
          size += chunk.length;
          // Enough to show: stop reading a long answer.
          if (size >= RESPONSE_EXCERPT_BYTES) {
            end();
            res.destroy();
          }
        });
        res.on('end', end);
        res.on('error', (error) => finish({ ok: false, httpStatus: status, error: error.message, response: null }));
      });
      req.on('error', (error) => finish({ ok: false, httpStatus: null, error: error.message, response: null }));
      req.end(attempt.body);
    });
  }

  /** Closes the connections kept alive. */
  close(): void {
    this.httpAgent.destroy();
    this.httpsAgent.destroy();
  }
}
