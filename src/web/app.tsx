import { useEffect, useMemo, useState } from 'react';
import { Provider, useQuery } from 'urql';
import { createGateway, type Connection, type Gateway } from './client';
import { ConversationList } from './conversation-list';
import { errorText } from './errors';
import { VIEWER } from './queries';
import type { ViewerData } from './types';
import { clearSession, loadSession, saveSession, type Session } from './session';
import { SignIn } from './sign-in';
import { Thread } from './thread';

/** The conversation in the address: /inbox/<phone number>. */
function selectedOf(path: string): string | null {
  const match = /^\/inbox\/([^/]+)/.exec(path);
  return match ? decodeURIComponent(match[1]) : null;
}

export function App() {
  const [session, setSession] = useState<Session | null>(() => loadSession());
  const signOut = () => {
    clearSession();
    setSession(null);
  };
  if (!session) return <SignIn onSignedIn={(s) => { saveSession(s); setSession(s); }} />;
  return <SignedIn key={session.apiToken} session={session} onSignOut={signOut} />;
}

function SignedIn({ session, onSignOut }: { session: Session; onSignOut: () => void }) {
  const gateway = useMemo<Gateway>(() => createGateway(session, onSignOut), [session]);
  useEffect(() => () => gateway.dispose(), [gateway]);
  return (
    <Provider value={gateway.client}>
      <Inbox gateway={gateway} session={session} onSignOut={onSignOut} />
    </Provider>
  );
}

function useConnection(gateway: Gateway): Connection {
  const [connection, setConnection] = useState<Connection>({ state: 'connecting', epoch: 0 });
  useEffect(() => gateway.onConnection(setConnection), [gateway]);
  return connection;
}

function Inbox({ gateway, session, onSignOut }: { gateway: Gateway; session: Session; onSignOut: () => void }) {
  const connection = useConnection(gateway);
  const [selected, setSelected] = useState<string | null>(() => selectedOf(location.pathname));
  const [{ data: viewer, error }] = useQuery<ViewerData>({ query: VIEWER });
  useEffect(() => {
    const onPop = () => setSelected(selectedOf(location.pathname));
    addEventListener('popstate', onPop);
    return () => removeEventListener('popstate', onPop);
  }, []);
  const open = (phoneNumber: string | null) => {
    history.pushState(null, '', phoneNumber ? `/inbox/${encodeURIComponent(phoneNumber)}` : '/inbox');
    setSelected(phoneNumber);
  };
  const me = viewer?.viewer.user;
  return (
    <div className={`inbox${selected ? ' has-selection' : ''}`}>
      <header className="topbar">
        <h1>{viewer?.organization.name ?? 'Inbox'}</h1>
        <span className={`connection ${connection.state}`} role="status" aria-live="polite" data-testid="connection">
          {connection.state === 'connected' ? 'Live' : connection.state === 'reconnecting' ? 'Reconnecting…' : 'Connecting…'}
        </span>
        <span className="who">
          {me ? `${me.name ?? me.email} · ${viewer!.viewer.role}` : viewer ? `Integration token · ${viewer.viewer.role}` : ''}
          {session.demo ? ' (demo)' : ''}
        </span>
        <button type="button" onClick={onSignOut}>Sign out</button>
      </header>
      {error && <p className="error" role="alert">{errorText(error)}</p>}
      <ConversationList selected={selected} onOpen={open} epoch={connection.epoch} />
      <main className="thread-pane">
        {selected ? (
          <Thread key={selected} phoneNumber={selected} viewer={viewer ?? null} epoch={connection.epoch} onBack={() => open(null)} />
        ) : (
          <p className="empty">Choose a conversation.</p>
        )}
      </main>
    </div>
  );
}
