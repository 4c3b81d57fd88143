import { useCallback, useEffect, useLayoutEffect, useRef, useState } from 'react';
import { useClient, useMutation, useQuery } from 'urql';
import { Composer } from './composer';
import { Controls } from './controls';
import { errorText } from './errors';
import { contactName, shortTime, ticks } from './format';
import type { ConversationItem, MessageItem, ViewerData } from './types';
import { CANCEL_SCHEDULED, CONVERSATION, MESSAGE_RECEIVED, MESSAGE_STATUS, NOTE_ADDED, THREAD } from './queries';

type NoteItem = { __typename: 'Note'; id: string; body: string; createdAt: string; author: { id: string; name: string | null } | null };
type Item = MessageItem | NoteItem;
type ThreadData = {
  conversation: (ConversationItem & {
    scheduledReplies: MessageItem[];
    timeline: { edges: Array<{ cursor: string; node: Item }>; pageInfo: { hasNextPage: boolean; endCursor: string | null } };
  }) | null;
};

const PAGE = 30;
const byTime = (a: Item, b: Item) => a.createdAt.localeCompare(b.createdAt) || a.id.localeCompare(b.id);

/**
 * One conversation: the timeline (messages and notes, oldest at the top, older pages on scroll up), live
 * inbound messages from `messageReceived(after:)` resumed from the newest message's cursor, so nothing is
 * missed or shown twice across reconnects (items are kept by id), and delivery ticks from `messageStatusChanged`.
 */
export function Thread({ phoneNumber, viewer, epoch, onBack }: { phoneNumber: string; viewer: ViewerData | null; epoch: number; onBack: () => void }) {
  const client = useClient();
  const [items, setItems] = useState<Map<string, Item>>(new Map());
  const [conversation, setConversation] = useState<ThreadData['conversation']>(null);
  const [older, setOlder] = useState<{ hasNextPage: boolean; endCursor: string | null } | null>(null);
  const [loaded, setLoaded] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [, cancelScheduled] = useMutation(CANCEL_SCHEDULED);
  // The conversation's own fields from the normalized cache: mutations and conversationUpdated keep them live.
  const [{ data: live }] = useQuery<{ conversation: ConversationItem | null }>({ query: CONVERSATION, variables: { phoneNumber } });
  const scroller = useRef<HTMLDivElement>(null);
  const stickToBottom = useRef(true);

  const merge = useCallback((incoming: Item[]) => {
    if (incoming.length === 0) return;
    setItems((current) => {
      const next = new Map(current);
      for (const item of incoming) next.set(item.id, { ...next.get(item.id), ...item } as Item);
      return next;
    });
  }, []);
  const newestCursor = useRef<string | null>(null);
  const sorted = [...items.values()].sort(byTime);
  for (const item of sorted) if (item.__typename === 'Message') newestCursor.current = item.cursor;

  const load = useCallback(async (after: string | null) => {
    const result = await client.query<ThreadData>(THREAD, { phoneNumber, first: PAGE, after }, { requestPolicy: 'network-only' }).toPromise();
    if (result.error) return setError(errorText(result.error));
    const data = result.data?.conversation ?? null;
    setError(null);
    setConversation(data);
    if (!data) return setLoaded(true);
    merge(data.timeline.edges.map((edge) => edge.node));
    // Only the first load, and pages further back, move the "older" marker.
    if (after !== null || !older) setOlder(data.timeline.pageInfo);
    setLoaded(true);
  }, [client, phoneNumber, merge, older]);

  useEffect(() => { void load(null); }, [phoneNumber]);
  // A reconnect: the newest page again (ticks that moved while the socket was down).
  useEffect(() => { if (epoch > 0) void load(null); }, [epoch]);

  // Live: each subscription starts after the first load; a reconnect restarts messageReceived from the newest cursor.
  useEffect(() => {
    if (!loaded) return;
    const received = client.subscription<{ messageReceived: MessageItem }>(MESSAGE_RECEIVED, { phoneNumber, after: newestCursor.current })
      .subscribe((result) => result.data && merge([{ ...result.data.messageReceived, __typename: 'Message' }]));
    return () => received.unsubscribe();
  }, [loaded, epoch, phoneNumber]);
  useEffect(() => {
    const statuses = client.subscription<{ messageStatusChanged: MessageItem }>(MESSAGE_STATUS, { phoneNumber })
      .subscribe((result) => result.data && merge([{ ...result.data.messageStatusChanged, __typename: 'Message' }]));
    const notes = client.subscription<{ noteAdded: NoteItem }>(NOTE_ADDED, { phoneNumber })
      .subscribe((result) => result.data && merge([{ ...result.data.noteAdded, __typename: 'Note' }]));
    return () => { statuses.unsubscribe(); notes.unsubscribe(); };
  }, [phoneNumber]);

  // Newest at the bottom: follow new items unless the reader scrolled up.
  useLayoutEffect(() => {
    const el = scroller.current;
    if (el && stickToBottom.current) el.scrollTop = el.scrollHeight;
  }, [items.size]);
  const onScroll = () => {
    const el = scroller.current!;
    stickToBottom.current = el.scrollHeight - el.scrollTop - el.clientHeight < 40;
    if (el.scrollTop < 60 && older?.hasNextPage) {
      const cursor = older.endCursor;
      setOlder({ hasNextPage: false, endCursor: cursor }); // one request at a time
      const height = el.scrollHeight;
      void load(cursor).then(() => requestAnimationFrame(() => (el.scrollTop += el.scrollHeight - height)));
    }
  };

  const scheduled = (conversation?.scheduledReplies ?? []).filter((m) => items.get(m.id)?.__typename !== 'Message' || (items.get(m.id) as MessageItem).status === 'SCHEDULED');
  const current = live?.conversation ?? conversation;
  const title = current ? contactName(current) : phoneNumber;
  return (
    <section className="thread" aria-label={`Conversation with ${title}`}>
      <header className="thread-head">
        <button type="button" className="back" onClick={onBack} aria-label="Back to the list">←</button>
        <div>
          <h2>{title}</h2>
          <span className="sub">{phoneNumber}{current?.contact && !current.contact.isOptedIn ? ' · opted out' : ''}</span>
        </div>
      </header>
      {current && <Controls conversation={current} viewer={viewer} />}
      {error && <p className="error" role="alert">{error}</p>}
      <div className="messages" ref={scroller} onScroll={onScroll} data-testid="messages" aria-live="polite">
        {older?.hasNextPage && <p className="older">Scroll up for older messages</p>}
        {loaded && !conversation && <p className="empty">No conversation with this number yet.</p>}
        <ol>
          {sorted.map((item) => (item.__typename === 'Note' ? <NoteBubble key={item.id} note={item} /> : <MessageBubble key={item.id} message={item} />))}
        </ol>
        {scheduled.length > 0 && (
          <ul className="scheduled" aria-label="Scheduled replies">
            {scheduled.map((m) => (
              <li key={m.id}>
                <span>🕓 {new Date(m.sendAt ?? m.createdAt).toLocaleString()}: {m.body}</span>
                <button type="button" onClick={() => void cancelScheduled({ id: m.id }).then(() => load(null))}>Cancel</button>
              </li>
            ))}
          </ul>
        )}
      </div>
      <Composer phoneNumber={phoneNumber} savedReplies={viewer?.savedReplies ?? []}
        optedOut={current?.contact ? !current.contact.isOptedIn : false}
        onSent={(message) => { stickToBottom.current = true; if (message.status === 'SCHEDULED') void load(null); else merge([{ ...message, __typename: 'Message' }]); }}
        onNote={(note) => { stickToBottom.current = true; merge([{ ...note, __typename: 'Note' }]); }} />
    </section>
  );
}

function MessageBubble({ message: m }: { message: MessageItem }) {
  const tick = ticks(m.status);
  return (
    <li className={`bubble ${m.direction === 'INCOMING' ? 'in' : 'out'}${m.requiresResponse ? ' needs-response' : ''}`} data-id={m.id} data-status={m.status ?? ''}>
      {m.body && <p className="body">{m.body}</p>}
      {m.mediaUrls.length > 0 && (
        <div className="media">{m.mediaUrls.map((url) => <a key={url} href={url} target="_blank" rel="noreferrer"><img src={url} alt="Attached media" loading="lazy" /></a>)}</div>
      )}
      {m.links.length > 0 && (
        <ul className="links">{m.links.map((l) => <li key={l.shortUrl}><a href={l.url} target="_blank" rel="noreferrer">{l.shortUrl}</a> · {l.clicks} click{l.clicks === 1 ? '' : 's'}</li>)}</ul>
      )}
      <footer>
        <time dateTime={m.createdAt}>{shortTime(m.createdAt)}</time>
        {m.sentBy && <span> · {m.sentBy.name}</span>}
        {m.direction === 'INCOMING' && m.sentiment && <span className={`quiet sentiment-${m.sentiment.toLowerCase()}`}>{m.sentiment.toLowerCase()}</span>}
        {m.direction === 'INCOMING' && m.category && <span className="quiet">{m.category}</span>}
        {m.requiresResponse && <span className="quiet needs">needs a reply</span>}
        {m.optOutDetected && <span className="quiet opt-out">opted out</span>}
        {m.direction === 'OUTGOING' && <span className={`ticks ${tick.label}`} data-testid="ticks" title={tick.label} aria-label={tick.label}>{tick.mark}</span>}
        {m.failureCode && <span className="quiet error-code">{m.failureCode}</span>}
      </footer>
    </li>
  );
}

function NoteBubble({ note }: { note: NoteItem }) {
  return (
    <li className="note" data-id={note.id}>
      <p className="body">{note.body}</p>
      <footer>Note · {note.author?.name ?? 'integration'} · <time dateTime={note.createdAt}>{shortTime(note.createdAt)}</time></footer>
    </li>
  );
}
