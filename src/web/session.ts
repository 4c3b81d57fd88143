// Who the page acts as: an API token (and organization id) kept in localStorage, or, when the server
// seeded the demo on this store outside production, the demo owner's credentials it put in index.html.
export type Session = { apiToken: string; organizationId: string; demo: boolean };

const KEY = 'conversations-gateway.session';
const SIGNED_OUT = 'conversations-gateway.signed-out';

function demoCredentials(): Session | null {
  const block = document.getElementById('demo-credentials');
  if (!block?.textContent) return null;
  try {
    const parsed = JSON.parse(block.textContent) as { apiToken?: string; organizationId?: string };
    return parsed.apiToken && parsed.organizationId ? { apiToken: parsed.apiToken, organizationId: parsed.organizationId, demo: true } : null;
  } catch {
    return null;
  }
}

export function loadSession(): Session | null {
  try {
    const saved = localStorage.getItem(KEY);
    if (saved) return { ...(JSON.parse(saved) as Session), demo: false };
  } catch {
    localStorage.removeItem(KEY);
  }
  // Signing out of the demo sticks until the next sign-in.
  if (localStorage.getItem(SIGNED_OUT)) return null;
  return demoCredentials();
}

export function saveSession(session: Session) {
  localStorage.setItem(KEY, JSON.stringify({ apiToken: session.apiToken, organizationId: session.organizationId }));
  localStorage.removeItem(SIGNED_OUT);
}

export function clearSession() {
  localStorage.removeItem(KEY);
  localStorage.setItem(SIGNED_OUT, '1');
}

export function headersOf(session: Session): Record<string, string> {
  const headers: Record<string, string> = { authorization: `Bearer ${session.apiToken}` };
  if (session.organizationId) headers['x-organization-id'] = session.organizationId;
  return headers;
}
