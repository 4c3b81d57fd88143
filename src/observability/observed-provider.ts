import { SpanKind } from '@opentelemetry/api';
import type { SmsProvider } from '../providers/sms-provider.js';
import type { Metrics } from './metrics.js';
import type { Tracing } from './tracing.js';

/**
 * The SMS provider as services see it, counted (gateway_sms_sends_total) and, with tracing on, with a span
 * per provider call (the Twilio client sends the span's traceparent on). Outcomes: `accepted` (the
 * provider took it), `refused` (the provider's error code: unsubscribed, invalid number ...), `in_doubt`
 * (timed out or cut off after the request went out: it may have been sent), `busy` (never sent: no slot
 * in time), `failed` (no answer that proves anything else: network before the request, DNS).
 */
export function observedProvider(sms: SmsProvider, metrics: Metrics, tracing: Tracing | null): SmsProvider {
  const span = <T>(name: string, attributes: Record<string, string>, work: () => Promise<T>): Promise<T> =>
    tracing ? tracing.inSpan(`${sms.name} ${name}`, { 'sms.provider': sms.name, ...attributes }, work, SpanKind.CLIENT) : work();
  return {
    name: sms.name,
    async send(message) {
      const result = await span('messages.create', { 'messaging.message.id': message.messageId }, () => sms.send(message));
      const outcome = result.ok
        ? 'accepted'
        : result.inDoubt
          ? 'in_doubt'
          : result.busy
            ? 'busy'
            : result.errorCode === null
              ? 'failed'
              : 'refused';
      metrics.smsSends.inc({ provider: sms.name, outcome });
      return result;
    },
    findSend: (send, withinMs) => span('messages.list', {}, () => sms.findSend(send, withinMs)),
    lookupLineType: (phoneNumber) => span('lookups.fetch', {}, () => sms.lookupLineType(phoneNumber)),
    close: () => sms.close(),
  };
}
