import type { ConversationRow, UserRow } from '../../db/tables.js';
import { builder } from '../builder.js';

// Object refs that several type modules use, declared apart from the modules that implement them so
// those modules do not import each other (contact and message point at Conversation, which lists both).

export const ConversationRef = builder.objectRef<ConversationRow>('Conversation');

export const UserRef = builder.objectRef<UserRow>('User');
