import { useState, type FormEvent } from 'react';
import type { Session } from './session';

/** Checks the token with `viewer` before keeping it. */
export function SignIn({ onSignedIn }: { onSignedIn: (session: Session) => void }) {
  const [apiToken, setApiToken] = useState('');
  const [organizationId, setOrganizationId] = useState('');
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    const headers: Record<string, string> = { 'content-type': 'application/json', authorization: `Bearer ${apiToken.trim()}` };
    if (organizationId.trim()) headers['x-organization-id'] = organizationId.trim();
    try {
      const response = await fetch('/graphql', { method: 'POST', headers, body: JSON.stringify({ query: '{ organization { id } }' }) });
      const body = (await response.json()) as { data?: { organization?: { id: string } }; errors?: Array<{ message: string }> };
      const id = body.data?.organization?.id;
      if (!id) throw new Error(body.errors?.[0]?.message ?? 'The token was not accepted.');
      onSignedIn({ apiToken: apiToken.trim(), organizationId: organizationId.trim(), demo: false });
    } catch (caught) {
      setError(caught instanceof Error ? caught.message : String(caught));
    } finally {
      setBusy(false);
    }
  };

  return (
    <main className="sign-in">
      <h1>Sign in to the inbox</h1>
      <form onSubmit={submit}>
        <label>
          API token
          <input type="password" autoComplete="off" required value={apiToken} onChange={(e) => setApiToken(e.target.value)} />
        </label>
        <label>
          Organization id <small>(when the token works in several)</small>
          <input value={organizationId} onChange={(e) => setOrganizationId(e.target.value)} />
        </label>
        {error && <p className="error" role="alert">{error}</p>}
        <button type="submit" disabled={busy}>Sign in</button>
      </form>
      <p className="hint">The token is kept in this browser (localStorage) until you sign out.</p>
    </main>
  );
}
