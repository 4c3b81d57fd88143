import { createServer, type Server } from 'node:http';
import { Webhook } from 'standardwebhooks';

// A real HTTP receiver of outgoing webhooks, as a customer would write one: it verifies every request with
// the `standardwebhooks` package and the endpoint's secret, and records what came.

export type Received = { at: number; id: string; timestamp: string; signature: string; body: string; type: string; data: any; verified: boolean };

export class WebhookReceiver {
  readonly received: Received[] = [];
  /** Status to answer each request with (default 200). */
  answer: (request: Received, count: number) => number | Promise<number> = () => 200;
  secret: string | null = null;
  private server!: Server;
  url = '';

  static async start(): Promise<WebhookReceiver> {
    const receiver = new WebhookReceiver();
    receiver.server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', async () => {
        const body = Buffer.concat(chunks).toString('utf8');
        const headers = {
          'webhook-id': String(req.headers['webhook-id'] ?? ''),
          'webhook-timestamp': String(req.headers['webhook-timestamp'] ?? ''),
          'webhook-signature': String(req.headers['webhook-signature'] ?? ''),
        };
        let verified = false;
        try {
          if (receiver.secret) {
            new Webhook(receiver.secret).verify(body, headers);
            verified = true;
          }
        } catch {
          verified = false;
        }
        const parsed = JSON.parse(body);
        const entry: Received = {
          at: Date.now(),
          id: headers['webhook-id'],
          timestamp: headers['webhook-timestamp'],
          signature: headers['webhook-signature'],
          body,
          type: parsed.type,
          data: parsed.data,
          verified,
        };
        receiver.received.push(entry);
        const status = await receiver.answer(entry, receiver.received.filter((r) => r.id === entry.id).length);
        res.writeHead(status, { 'content-type': 'text/plain' });
        res.end(status < 300 ? 'ok' : 'nope');
      });
    });
    await new Promise<void>((resolve) => receiver.server.listen(0, '127.0.0.1', resolve));
    const { port } = receiver.server.address() as { port: number };
    receiver.url = `http://127.0.0.1:${port}/hooks`;
    return receiver;
  }

  /** Each webhook-id once, in first-arrival order (what a deduplicating receiver acts on). */
  distinct(type?: string): Received[] {
    const seen = new Set<string>();
    return this.received.filter((r) => (!type || r.type === type) && !seen.has(r.id) && (seen.add(r.id), true));
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}
