// The shapes of the API results the page's components share (the queries are in queries.ts).

export type ViewerData = {
  viewer: { role: string; user: { id: string; name: string | null; email: string } | null };
  organization: { id: string; name: string; members: Array<{ role: string; user: { id: string; name: string | null; email: string } }> };
  savedReplies: Array<{ id: string; name: string; body: string }>;
};

export type ConversationItem = {
  id: string; phoneNumber: string; status: string; unreadCount: number; isStarred: boolean; isArchived: boolean;
  snoozedUntil: string | null; waitingSince: string | null; lastMessageAt: string | null;
  lastMessage: { id: string; body: string; direction: string } | null;
  contact: { id: string; firstName: string | null; lastName: string | null; isOptedIn: boolean; isTextable: boolean | null } | null;
  assignee: { id: string; name: string | null; email: string } | null;
};

export type MessageItem = {
  __typename: 'Message'; id: string; cursor: string; body: string; direction: 'INCOMING' | 'OUTGOING'; status: string | null;
  createdAt: string; sendAt: string | null; segments: number | null; encoding: string | null; errorCode: number | null; failureCode: string | null;
  sentiment: string | null; category: string | null; requiresResponse: boolean | null; optOutDetected: boolean | null;
  mediaUrls: string[]; links: Array<{ shortUrl: string; url: string; clicks: number }>; sentBy: { id: string; name: string | null } | null;
};
