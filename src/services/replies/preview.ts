import { AppError } from '../../errors.js';
import { normalizePhone } from '../phone.js';
import { checkShape, compose } from './compose.js';
import { resolveRecipient, shortLinkBaseOf, type RecipientDeps } from './recipient.js';
import { insufficientCredits } from './refusals.js';
import type { ReplyPreview, SendReplyInput } from './types.js';

/** What sendReply would do, without storing, sending or charging anything. */
export async function previewReply(deps: RecipientDeps, organizationId: string, input: SendReplyInput): Promise<ReplyPreview> {
  const shapeError = checkShape(input);
  if (shapeError) throw shapeError;
  const phoneNumber = normalizePhone(input.phoneNumber);
  const recipient = await resolveRecipient(deps, organizationId, phoneNumber, input, 'preview');
  const base = recipient instanceof AppError ? await shortLinkBaseOf(deps, organizationId) : recipient.shortLinkBase;
  const composed = compose(input, base, deps.config.mmsCreditPrice);
  const preview = {
    text: composed.text,
    encoding: composed.encoding,
    segments: composed.segments,
    route: composed.route,
    credits: composed.credits,
  };
  if (composed.error) return { ...preview, error: composed.error };
  if (recipient instanceof AppError) return { ...preview, error: recipient };
  const error = recipient.balance < composed.credits ? insufficientCredits(composed.credits, recipient.balance) : null;
  return { ...preview, error };
}
