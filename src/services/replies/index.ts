// Replies: what the GraphQL, REST and CLI surfaces call. The steps of a send live beside this file:
// compose (input and text), recipient (contact and number), refusals, reserve (credits and message),
// settle (the provider's answer or the refund, shared with the sweep), idempotency, send, preview.
export { previewReply } from './preview.js';
export { sendReply } from './send.js';
export { SendsInDoubtSweeper, settleSendsInDoubt, type SweepResult } from './sends-in-doubt.js';
export type { ReplyPreview, Route, SendReplyInput, SendReplyOutcome } from './types.js';
export { cancelScheduledReply, rescheduleReply, SCHEDULED_REPLY_QUEUE, scheduledRepliesOf, scheduleReply, sendAtDecision } from './schedule.js';
export { scheduledReplyHandler } from './scheduled-send.js';
