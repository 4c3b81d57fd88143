import { useVirtualizer } from '@tanstack/react-virtual';
import { useEffect, useMemo, useRef, useState } from 'react';
import { useClient, useQuery, useSubscription } from 'urql';
import { errorText } from './errors';
import { contactName, shortTime } from './format';
import { CONVERSATION_UPDATED, CONVERSATIONS, COUNTS } from './queries';
import type { ConversationItem } from './types';

type ListData = { conversations: { edges: Array<{ cursor: string; node: ConversationItem }>; pageInfo: { hasNextPage: boolean; endCursor: string | null } } };
type CountsData = { counts: Record<string, number>; starred: { all: number }; archived: { all: number } };

type FilterKey = 'all' | 'unread' | 'unresponded' | 'mine' | 'unassigned' | 'starred' | 'archived' | 'OPEN' | 'PENDING' | 'RESOLVED' | 'SNOOZED';
const FILTERS: Array<{ key: FilterKey; label: string; filter: Record<string, unknown>; count: (c: CountsData) => number }> = [
  { key: 'all', label: 'All', filter: {}, count: (c) => c.counts.all },
  { key: 'unread', label: 'Unread', filter: { unread: true }, count: (c) => c.counts.unread },
  { key: 'unresponded', label: 'Unresponded', filter: { unresponded: true }, count: (c) => c.counts.waiting },
  { key: 'mine', label: 'Mine', filter: { mine: true }, count: (c) => c.counts.mine },
  { key: 'unassigned', label: 'Unassigned', filter: { unassigned: true }, count: (c) => c.counts.unassigned },
  { key: 'starred', label: 'Starred', filter: { starred: true }, count: (c) => c.starred.all },
  { key: 'OPEN', label: 'Open', filter: { status: ['OPEN'] }, count: (c) => c.counts.open },
  { key: 'PENDING', label: 'Pending', filter: { status: ['PENDING'] }, count: (c) => c.counts.pending },
  { key: 'SNOOZED', label: 'Snoozed', filter: { status: ['SNOOZED'] }, count: (c) => c.counts.snoozed },
  { key: 'RESOLVED', label: 'Resolved', filter: { status: ['RESOLVED'] }, count: (c) => c.counts.resolved },
  // Archived conversations are left out of every other view; this one shows only them.
  { key: 'archived', label: 'Archived', filter: { archived: true }, count: (c) => c.archived.all },
];

const PAGE = 50;
const ROW_HEIGHT = 68;

export function ConversationList({ selected, onOpen, epoch }: { selected: string | null; onOpen: (phone: string) => void; epoch: number }) {
  const client = useClient();
  const [filterKey, setFilterKey] = useState<FilterKey>('all');
  const [orderBy, setOrderBy] = useState<'LAST_ACTIVITY' | 'WAITING_LONGEST'>('LAST_ACTIVITY');
  const [searchInput, setSearchInput] = useState('');
  const [search, setSearch] = useState('');
  const [after, setAfter] = useState<string | null>(null);
  useEffect(() => {
    const timer = setTimeout(() => setSearch(searchInput.trim()), 250);
    return () => clearTimeout(timer);
  }, [searchInput]);

  const filter = useMemo(() => {
    const base = FILTERS.find((f) => f.key === filterKey)!.filter;
    return search ? { ...base, search } : base;
  }, [filterKey, search]);
  useEffect(() => setAfter(null), [filter, orderBy]);

  const listVariables = { filter, orderBy, first: PAGE };
  const [{ data, fetching, error }] = useQuery<ListData>({ query: CONVERSATIONS, variables: { ...listVariables, after } });
  const [{ data: counts }] = useQuery<CountsData>({ query: COUNTS, variables: { search: search || null } });

  // The first page and the badges again, from the network: the cache merges the page in (relayPagination),
  // so a changed conversation moves to the top and one that left the filter leaves the list.
  const refresh = useRef<(attempt?: number) => void>(() => {});
  refresh.current = (attempt = 0) => {
    const list = client.query(CONVERSATIONS, { ...listVariables, after: null }, { requestPolicy: 'network-only' }).toPromise();
    const badges = client.query(COUNTS, { search: search || null }, { requestPolicy: 'network-only' }).toPromise();
    // Right after a reconnect the browser may reuse a connection the stopped server closed: try again, a few times.
    void Promise.all([list, badges]).then((results) => {
      if (results.some((result) => result.error?.networkError) && attempt < 3) setTimeout(() => refresh.current(attempt + 1), 500 * (attempt + 1));
    });
  };
  const pending = useRef<ReturnType<typeof setTimeout> | null>(null);
  useSubscription({ query: CONVERSATION_UPDATED }, (_: unknown, event: unknown) => {
    if (pending.current === null) pending.current = setTimeout(() => { pending.current = null; refresh.current(); }, 100);
    return event;
  });
  // After a reconnect, whatever changed while the socket was down.
  useEffect(() => { if (epoch > 0) refresh.current(); }, [epoch]);

  const edges = data?.conversations.edges ?? [];
  const pageInfo = data?.conversations.pageInfo;
  const scroller = useRef<HTMLDivElement>(null);
  const virtualizer = useVirtualizer({ count: edges.length, getScrollElement: () => scroller.current, estimateSize: () => ROW_HEIGHT, overscan: 8 });
  const items = virtualizer.getVirtualItems();
  const last = items[items.length - 1];
  useEffect(() => {
    // Endless scroll: near the end, ask for the next page (the cache appends it).
    if (last && last.index >= edges.length - 10 && pageInfo?.hasNextPage && !fetching && pageInfo.endCursor !== after) setAfter(pageInfo.endCursor);
  }, [last?.index, edges.length, pageInfo?.hasNextPage, pageInfo?.endCursor, fetching]);

  return (
    <nav className="list-pane" aria-label="Conversations">
      <div className="list-tools">
        <input type="search" aria-label="Search conversations" placeholder="Search name or number" value={searchInput} onChange={(e) => setSearchInput(e.target.value)} />
        <label className="sort">
          Sort
          <select value={orderBy} onChange={(e) => setOrderBy(e.target.value as typeof orderBy)}>
            <option value="LAST_ACTIVITY">Latest activity</option>
            <option value="WAITING_LONGEST">Longest waiting</option>
          </select>
        </label>
      </div>
      <div className="filters" role="group" aria-label="Filters">
        {FILTERS.map((f) => (
          <button key={f.key} type="button" aria-pressed={f.key === filterKey} data-filter={f.key} onClick={() => setFilterKey(f.key)}>
            {f.label} <span className="badge" data-testid={`count-${f.key}`}>{counts ? f.count(counts) : '·'}</span>
          </button>
        ))}
      </div>
      {error && <p className="error" role="alert">{errorText(error)}</p>}
      <div className="list-scroll" ref={scroller}>
        <ul role="list" style={{ height: virtualizer.getTotalSize() }} data-testid="conversation-list" data-count={edges.length}>
          {items.map((row) => {
            const c = edges[row.index].node;
            return (
              <li key={c.id} data-phone={c.phoneNumber} style={{ transform: `translateY(${row.start}px)`, height: ROW_HEIGHT }}
                className={`conversation${c.phoneNumber === selected ? ' selected' : ''}${c.unreadCount > 0 ? ' unread' : ''}`}>
                <button type="button" onClick={() => onOpen(c.phoneNumber)} aria-current={c.phoneNumber === selected ? 'true' : undefined}>
                  <span className="name">{c.isStarred ? '★ ' : ''}{contactName(c)}</span>
                  <span className="time">{shortTime(c.lastMessageAt)}</span>
                  <span className="preview">{c.lastMessage?.direction === 'OUTGOING' ? 'You: ' : ''}{c.lastMessage?.body ?? ''}</span>
                  <span className="meta">
                    {c.status !== 'OPEN' && <span className="tag">{c.status.toLowerCase()}</span>}
                    {c.assignee && <span className="tag">{c.assignee.name ?? c.assignee.email}</span>}
                    {c.unreadCount > 0 && <span className="badge unread-count" aria-label={`${c.unreadCount} unread`}>{c.unreadCount}</span>}
                  </span>
                </button>
              </li>
            );
          })}
        </ul>
        {!fetching && edges.length === 0 && <p className="empty">No conversations here.</p>}
      </div>
    </nav>
  );
}
