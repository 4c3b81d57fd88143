export function contactName(c: { phoneNumber: string; contact?: { firstName?: string | null; lastName?: string | null } | null }): string {
  const name = [c.contact?.firstName, c.contact?.lastName].filter(Boolean).join(' ');
  return name || c.phoneNumber;
}

export function shortTime(iso: string | null | undefined): string {
  if (!iso) return '';
  const date = new Date(iso);
  const today = new Date();
  return date.toDateString() === today.toDateString()
    ? date.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })
    : date.toLocaleDateString([], { month: 'short', day: 'numeric' });
}

/** Delivery ticks: one for sent, two for delivered or read. */
export function ticks(status: string | null | undefined): { mark: string; label: string } {
  switch (status) {
    case 'SCHEDULED': return { mark: '🕓', label: 'scheduled' };
    case 'QUEUED': case 'ACCEPTED': case 'SENDING': return { mark: '…', label: 'sending' };
    case 'SENT': return { mark: '✓', label: 'sent' };
    case 'DELIVERED': return { mark: '✓✓', label: 'delivered' };
    case 'READ': return { mark: '✓✓', label: 'read' };
    case 'FAILED': case 'UNDELIVERED': return { mark: '!', label: status.toLowerCase() };
    case 'CANCELED': return { mark: '×', label: 'canceled' };
    default: return { mark: '', label: '' };
  }
}

export function newKey(): string {
  return crypto.randomUUID();
}
