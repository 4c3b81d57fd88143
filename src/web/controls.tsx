import { useState } from 'react';
import { useMutation } from 'urql';
import type { ConversationItem, ViewerData } from './types';
import { errorText } from './errors';
import { ARCHIVE, ASSIGN, MARK_READ, SET_STATUS, STAR } from './queries';

/** Status, snooze, assignment, star, archive and read: each a mutation whose answer updates the cache. */
export function Controls({ conversation: c, viewer }: { conversation: ConversationItem; viewer: ViewerData | null }) {
  const [status, setStatus] = useMutation(SET_STATUS);
  const [assign, setAssign] = useMutation(ASSIGN);
  const [star, setStar] = useMutation(STAR);
  const [archive, setArchive] = useMutation(ARCHIVE);
  const [read, markRead] = useMutation(MARK_READ);
  const [snoozeUntil, setSnoozeUntil] = useState('');
  const error = status.error ?? assign.error ?? star.error ?? archive.error ?? read.error;
  const phoneNumber = c.phoneNumber;
  return (
    <div className="controls" role="group" aria-label="Conversation controls">
      <label>
        Status
        <select data-testid="status" value={c.status} onChange={(e) => e.target.value !== 'SNOOZED' && void setStatus({ phoneNumber, status: e.target.value })}>
          <option value="OPEN">Open</option>
          <option value="PENDING">Pending</option>
          <option value="RESOLVED">Resolved</option>
          <option value="SNOOZED" disabled={c.status !== 'SNOOZED'}>Snoozed{c.snoozedUntil ? ` until ${new Date(c.snoozedUntil).toLocaleString()}` : ''}</option>
        </select>
      </label>
      <label>
        Snooze until
        <input type="datetime-local" value={snoozeUntil} onChange={(e) => setSnoozeUntil(e.target.value)} />
      </label>
      <button type="button" disabled={!snoozeUntil}
        onClick={() => void setStatus({ phoneNumber, status: 'SNOOZED', snoozedUntil: new Date(snoozeUntil).toISOString() })}>Snooze</button>
      <label>
        Assignee
        <select data-testid="assignee" value={c.assignee?.id ?? ''} onChange={(e) => void setAssign({ phoneNumber, userId: e.target.value || null })}>
          <option value="">Unassigned</option>
          {viewer?.organization.members.map((m) => <option key={m.user.id} value={m.user.id}>{m.user.name ?? m.user.email}</option>)}
          {c.assignee && !viewer?.organization.members.some((m) => m.user.id === c.assignee!.id) && <option value={c.assignee.id}>{c.assignee.name ?? c.assignee.email}</option>}
        </select>
      </label>
      <button type="button" aria-pressed={c.isStarred} onClick={() => void setStar({ phoneNumber, starred: !c.isStarred })}>{c.isStarred ? '★ Starred' : '☆ Star'}</button>
      <button type="button" aria-pressed={c.isArchived} onClick={() => void setArchive({ phoneNumber, archived: !c.isArchived })}>{c.isArchived ? 'Unarchive' : 'Archive'}</button>
      <button type="button" disabled={c.unreadCount === 0} onClick={() => void markRead({ phoneNumber })}>Mark read{c.unreadCount > 0 ? ` (${c.unreadCount})` : ''}</button>
      {error && <p className="error" role="alert">{errorText(error)}</p>}
    </div>
  );
}
