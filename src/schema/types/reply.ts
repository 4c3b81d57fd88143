import type { MessageRow, ShortLinkRow } from '../../db/tables.js';
import { AppError } from '../../errors.js';
import { previewReply, scheduleReply, sendAtDecision, sendReply, type SendReplyOutcome } from '../../services/replies/index.js';
import { withSavedReply, type SavedReplyRequest } from '../../services/saved-replies.js';
import type { RequestContext } from '../../context.js';
import { builder } from '../builder.js';
import { uuidOfNodeId } from '../global-ids.js';
import {
  ContactNonTextableError,
  ContactNotFoundError,
  ContactOptedOutError,
  ContactTextabilityPendingError,
  DomainError,
  ErrorInterface,
  FromNumberForbiddenError,
  InsufficientCreditsError,
  InvalidMessageError,
  NoFromNumberError,
  errorView,
  ProviderError,
  SavedReplyNotFoundError,
  typedError,
} from './errors.js';
import { MessageRef } from './message.js';

export const RouteEnum = builder.enumType('Route', {
  description: 'How a reply goes out.',
  values: {
    AUTO: { value: 'AUTO', description: 'MMS when media is attached, otherwise SMS.' },
    SMS: { value: 'SMS', description: 'SMS only; attaching media is an InvalidMessageError.' },
    MMS: { value: 'MMS', description: 'MMS, charged at the MMS price, with or without media.' },
  } as const,
});

const SendReplyInputType = builder.inputType('SendReplyInput', {
  fields: (t) => ({
    phoneNumber: t.string({ required: true, description: "The contact's number, any standard US format." }),
    message: t.string({
      description: 'The text; may be empty when media is attached. At most 1,600 characters. Give message or savedReplyId, not both.',
    }),
    savedReplyId: t.id({
      description: "A saved reply (its Node id or raw UUID) to send instead of message, its merge fields filled in from this contact.",
    }),
    fromPhoneNumberId: t.id({ description: "Sending number (its Node id or raw UUID); default: the organization's default number." }),
    mediaUrl: t.string({ description: 'One absolute http(s) media URL; makes the reply an MMS under route AUTO.' }),
    mediaUrls: t.stringList({ description: 'Media URLs (with mediaUrl: at most 10 in all).' }),
    normalizeText: t.boolean({
      defaultValue: true,
      description: 'Replace smart quotes, dashes, ellipses, odd spaces and similar with GSM-7 equivalents (emoji stay).',
    }),
    forceRoute: t.field({ type: RouteEnum, defaultValue: 'AUTO' }),
    idempotencyKey: t.string({
      description:
        'A retry with the same key (in your organization) returns the first result and sends nothing more, even when the calls race.',
    }),
    sendAt: t.field({
      type: 'DateTime',
      description:
        'Schedule the reply: more than 5 s ahead it is stored as SCHEDULED (creditsCharged 0) and goes out at that time (within 5 s); ' +
        'credits are checked and reserved then. Within 5 s it goes out now. In the past or more than 90 days ahead: BAD_USER_INPUT.',
    }),
  }),
});

type SendReplySuccess = Extract<SendReplyOutcome, { ok: true }>;
const SendReplyPayloadRef = builder.objectRef<SendReplySuccess>('SendReplyPayload');
SendReplyPayloadRef.implement({
  description: 'A reply handed to the provider, or scheduled for later (message status SCHEDULED, creditsCharged 0, no provider id yet).',
  fields: (t) => ({
    message: t.field({ type: MessageRef, resolve: (p) => p.message }),
    provider: t.exposeString('provider', { description: '`twilio` or `simulated`.' }),
    providerMessageId: t.exposeString('providerMessageId', { nullable: true, description: "The provider's id (Twilio's SM... SID)." }),
    segments: t.exposeInt('segments', { description: 'SMS segments (1 for an MMS).' }),
    encoding: t.exposeString('encoding', { description: '`GSM-7` or `UCS-2`.' }),
    creditsCharged: t.exposeInt('creditsCharged'),
  }),
});

type Preview = Awaited<ReturnType<typeof previewReply>>;
const ReplyPreviewRef = builder.objectRef<Preview>('ReplyPreview');
ReplyPreviewRef.implement({
  description: 'What sendReply would send and charge, computed without sending, storing or charging anything.',
  fields: (t) => ({
    text: t.exposeString('text', { description: 'The text after normalization and link shortening (preview codes are not reserved).' }),
    encoding: t.exposeString('encoding', { description: '`GSM-7` or `UCS-2`.' }),
    segments: t.exposeInt('segments'),
    route: t.field({ type: RouteEnum, description: 'SMS or MMS, as AUTO would resolve.', resolve: (p) => p.route }),
    credits: t.exposeInt('credits'),
    error: t.field({
      type: ErrorInterface,
      nullable: true,
      description: 'What sendReply would refuse with, if anything.',
      resolve: (p) => {
        if (!p.error) return null;
        // Codes without an Error type (none today) surface as a field error rather than vanish.
        const view = errorView(p.error);
        if (!view) throw p.error;
        return view;
      },
    }),
  }),
});

type InputShape = typeof SendReplyInputType.$inferInput;
const toServiceInput = ({ sendAt: _sendAt, ...input }: InputShape): SavedReplyRequest => ({
  ...input,
  fromPhoneNumberId: input.fromPhoneNumberId === null || input.fromPhoneNumberId === undefined ? null : uuidOfNodeId(input.fromPhoneNumberId, 'PhoneNumber'),
  savedReplyId: input.savedReplyId === null || input.savedReplyId === undefined ? null : uuidOfNodeId(input.savedReplyId, 'SavedReply'),
  forceRoute: input.forceRoute ?? 'AUTO',
});

/** The input with its message: as given, or the saved reply rendered for the contact (services/saved-replies.ts). */
const resolvedInput = (input: InputShape, ctx: RequestContext) =>
  withSavedReply(ctx.deps, ctx.caller.organizationId, toServiceInput(input)).catch((error: unknown) => {
    throw error instanceof AppError ? typedError(error) : error;
  });

/** SEND_IN_DOUBT: the provider call got no answer; the reply stays queued and charged until it is settled. */
class SendInDoubtError extends DomainError {
  constructor(
    error: AppError,
    readonly reply: MessageRow,
  ) {
    super(error);
  }
}
builder.objectType(SendInDoubtError, {
  name: 'SendInDoubtError',
  description:
    'The SMS provider did not answer in time (a timeout or a lost connection), so the reply may or may not have gone out. ' +
    'Do not send it again: it stays QUEUED with its credits reserved and is settled within about twice SMS_PROVIDER_TIMEOUT_MS, ' +
    'as sent (with its provider id) or as FAILED and refunded; messageStatusChanged tells when.',
  interfaces: [ErrorInterface],
  isTypeOf: (value) => value instanceof SendInDoubtError,
  fields: (t) => ({
    reply: t.field({ type: MessageRef, description: 'The reply as stored now (QUEUED).', resolve: (e) => e.reply }),
  }),
});

const SEND_REPLY_ERRORS = [
  ContactNotFoundError,
  ContactOptedOutError,
  ContactNonTextableError,
  ContactTextabilityPendingError,
  NoFromNumberError,
  FromNumberForbiddenError,
  InsufficientCreditsError,
  InvalidMessageError,
  ProviderError,
  SendInDoubtError,
  SavedReplyNotFoundError,
];

builder.mutationField('sendReply', (t) =>
  t.field({
    type: SendReplyPayloadRef,
    description:
      'Sends an SMS or MMS reply to a contact. Replies bypass quiet hours: they go out immediately, at any hour. ' +
      'URLs become tracked short links; credits are reserved before sending and refunded if the provider refuses.',
    args: { input: t.arg({ type: SendReplyInputType, required: true }) },
    errors: { types: SEND_REPLY_ERRORS, directResult: true, union: { name: 'SendReplyResult' } },
    resolve: async (_root, { input }, ctx: RequestContext) => {
      // A saved reply is rendered now, also when the reply is scheduled: what was previewed is what goes out.
      const request = { ...(await resolvedInput(input, ctx)), sentByUserId: ctx.caller.userId };
      const outcome =
        input.sendAt && sendAtDecision(input.sendAt) === 'later'
          ? await scheduleReply(ctx.deps, ctx.caller.organizationId, request, input.sendAt)
          : await sendReply(ctx.deps, ctx.caller.organizationId, request);
      if (!outcome.ok) throw outcome.inDoubt ? new SendInDoubtError(outcome.error, outcome.inDoubt) : typedError(outcome.error);
      ctx.loaders.message.clear(outcome.message.id).prime(outcome.message.id, outcome.message);
      ctx.loaders.conversation.clear(outcome.message.conversationId);
      return outcome;
    },
  }),
);

builder.queryField('previewReply', (t) =>
  t.field({
    type: ReplyPreviewRef,
    description:
      'Dry run of sendReply: the text, encoding, segments, route and credits it would use, and the error it would give. Sends nothing, charges nothing.',
    args: { input: t.arg({ type: SendReplyInputType, required: true }) },
    resolve: async (_root, { input }, ctx) => previewReply(ctx.deps, ctx.caller.organizationId, await resolvedInput(input, ctx)),
  }),
);

const ShortLinkRef = builder.objectRef<ShortLinkRow>('ShortLink');
ShortLinkRef.implement({
  description: 'A URL of an outgoing message, replaced by a tracked short link.',
  fields: (t) => ({
    url: t.exposeString('url', { description: 'The original URL; `/l/<code>` redirects here.' }),
    shortUrl: t.string({
      description: 'The link as it went out in the message.',
      resolve: (link, _args, ctx) => link.shortUrl ?? `${ctx.deps.config.publicBaseUrl}/l/${link.code}`,
    }),
    clicks: t.exposeInt('clicks'),
  }),
});

builder.objectFields(MessageRef, (t) => ({
  links: t.field({
    type: [ShortLinkRef],
    description: 'Short links in this message (outgoing), with their click counts.',
    resolve: async (m, _args, ctx) => {
      if (m.direction !== 'outgoing') return [];
      const links = await ctx.loaders.shortLinks.load(m.id);
      // In the order they appear in the text (they were stored within one statement time).
      const at = (link: ShortLinkRow) => m.body.indexOf(link.shortUrl ?? `/l/${link.code}`);
      return [...links].sort((a, b) => at(a) - at(b));
    },
  }),
  encoding: t.exposeString('encoding', { nullable: true, description: '`GSM-7` or `UCS-2` (outgoing).' }),
  creditsCharged: t.exposeInt('creditsCharged', { description: 'Credits this message cost (0 once refunded).' }),
  provider: t.exposeString('provider', { nullable: true, description: '`twilio`, `simulated`, ...' }),
  providerMessageId: t.exposeString('providerMessageId', { nullable: true, description: "The provider's id (Twilio MessageSid)." }),
  sentFrom: t.exposeString('sentFrom', {
    nullable: true,
    description: 'Outgoing: the sender the provider reports (status callbacks), E.164; a Messaging Service picks it from its pool.',
  }),
}));
