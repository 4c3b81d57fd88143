import { builder } from './builder.js';
import './types/organization.js';
import './types/contact.js';
import './types/conversation.js';
import './types/message.js';

export const schema = builder.toSchema({ sortSchema: false });
