import { builder } from './builder.js';
import './types/organization.js';
import './types/user.js';
import './types/api-token.js';
import './types/audit-event.js';
import './types/contact.js';
import './types/conversation.js';
import './types/conversation-status.js';
import './types/message.js';
import './types/errors.js';
import './types/reply.js';
import './types/scheduled-reply.js';
import './types/saved-reply.js';
import './types/consent.js';
import './types/subscriptions.js';
import './types/note.js';
import './types/webhook.js';

export const schema = builder.toSchema({ sortSchema: false });
