import { useEffect, useRef, useState, type KeyboardEvent } from 'react';
import { useClient, useMutation } from 'urql';
import { describeError, errorText } from './errors';
import { newKey } from './format';
import { ADD_NOTE, PREVIEW, SEND } from './queries';
import type { MessageItem } from './types';

type Preview = { text: string; encoding: string; segments: number; credits: number; route: string; error: { code: string; message: string } | null };
type SendResult = { sendReply: { __typename: string; message?: MessageItem; code?: string; errorMessage?: string } };
type NoteResult = { addNote: { __typename: string; id?: string; body?: string; createdAt?: string; author?: { id: string; name: string | null } | null; code?: string; message?: string } };

/**
 * Reply (or note) box: a debounced `previewReply` under it; Enter sends, Shift+Enter breaks the line.
 * Each draft carries one idempotency key, kept across retries of that draft, so a double Enter or a retry
 * after a lost answer sends once.
 */
export function Composer(props: {
  phoneNumber: string; savedReplies: Array<{ id: string; name: string; body: string }>; optedOut: boolean;
  onSent: (message: MessageItem) => void; onNote: (note: { id: string; body: string; createdAt: string; author: { id: string; name: string | null } | null }) => void;
}) {
  const client = useClient();
  const [text, setText] = useState('');
  const [mode, setMode] = useState<'reply' | 'note'>('reply');
  const [sendAt, setSendAt] = useState('');
  const [preview, setPreview] = useState<Preview | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [sending, setSending] = useState(false);
  const key = useRef(newKey());
  const [, send] = useMutation<SendResult>(SEND);
  const [, addNote] = useMutation<NoteResult>(ADD_NOTE);

  useEffect(() => {
    if (mode !== 'reply' || text.trim() === '') return setPreview(null);
    let current = true;
    const timer = setTimeout(async () => {
      const result = await client.query<{ previewReply: Preview }>(PREVIEW, { input: { phoneNumber: props.phoneNumber, message: text } }, { requestPolicy: 'network-only' }).toPromise();
      if (current) setPreview(result.data?.previewReply ?? null);
    }, 250);
    return () => { current = false; clearTimeout(timer); };
  }, [text, mode, props.phoneNumber]);

  const edit = (value: string) => {
    setText(value);
    setError(null);
    key.current = newKey(); // a different draft is a different send
  };

  const submit = async () => {
    const body = text.trim();
    if (!body || sending) return;
    setSending(true);
    setError(null);
    try {
      if (mode === 'note') {
        const result = await addNote({ input: { phoneNumber: props.phoneNumber, body } });
        const note = result.data?.addNote;
        if (result.error || !note) return setError(errorText(result.error));
        if (note.__typename !== 'Note') return setError(describeError(note.code, note.message));
        props.onNote(note as never);
      } else {
        const input: Record<string, unknown> = { phoneNumber: props.phoneNumber, message: text, idempotencyKey: key.current };
        if (sendAt) input.sendAt = new Date(sendAt).toISOString();
        const result = await send({ input });
        const answer = result.data?.sendReply;
        if (result.error || !answer) return setError(errorText(result.error));
        if (answer.__typename !== 'SendReplyPayload' || !answer.message) return setError(describeError(answer.code, answer.errorMessage));
        props.onSent(answer.message);
        setSendAt('');
      }
      setText('');
      key.current = newKey();
    } finally {
      setSending(false);
    }
  };

  const onKeyDown = (event: KeyboardEvent<HTMLTextAreaElement>) => {
    if (event.key === 'Enter' && !event.shiftKey && !event.nativeEvent.isComposing) {
      event.preventDefault();
      void submit();
    }
  };

  const useSaved = async (id: string) => {
    if (!id) return;
    // The saved reply's text with this contact's merge fields filled in, to read (and edit) before sending.
    const result = await client.query<{ previewReply: Preview }>(PREVIEW, { input: { phoneNumber: props.phoneNumber, savedReplyId: id } }, { requestPolicy: 'network-only' }).toPromise();
    const filled = result.data?.previewReply.text ?? props.savedReplies.find((s) => s.id === id)?.body ?? '';
    edit(filled);
  };

  return (
    <form className={`composer ${mode}`} onSubmit={(e) => { e.preventDefault(); void submit(); }}>
      <div className="composer-tools">
        <div role="group" aria-label="Write a">
          <button type="button" aria-pressed={mode === 'reply'} onClick={() => setMode('reply')}>Reply</button>
          <button type="button" aria-pressed={mode === 'note'} onClick={() => setMode('note')}>Note</button>
        </div>
        {mode === 'reply' && props.savedReplies.length > 0 && (
          <label>
            Saved reply
            <select value="" onChange={(e) => void useSaved(e.target.value)}>
              <option value="">Choose…</option>
              {props.savedReplies.map((s) => <option key={s.id} value={s.id}>{s.name}</option>)}
            </select>
          </label>
        )}
        {mode === 'reply' && (
          <label>
            Send at
            <input type="datetime-local" value={sendAt} onChange={(e) => setSendAt(e.target.value)} />
          </label>
        )}
      </div>
      {props.optedOut && mode === 'reply' && <p className="warning">This contact opted out: replies will be refused.</p>}
      <textarea aria-label={mode === 'reply' ? 'Reply' : 'Internal note'} rows={3} value={text} onChange={(e) => edit(e.target.value)} onKeyDown={onKeyDown}
        placeholder={mode === 'reply' ? 'Write a reply (Enter sends, Shift+Enter for a new line)' : 'Internal note, never sent to the contact'} />
      <div className="composer-foot">
        <span className="preview" data-testid="preview" aria-live="polite">
          {preview && `${preview.segments} segment${preview.segments === 1 ? '' : 's'} · ${preview.encoding} · ${preview.credits} credit${preview.credits === 1 ? '' : 's'} · ${preview.route}`}
          {preview?.error && <span className="refusal"> · {describeError(preview.error.code, preview.error.message)}</span>}
        </span>
        <button type="submit" disabled={sending || !text.trim()}>{mode === 'note' ? 'Add note' : sendAt ? 'Schedule' : 'Send'}</button>
      </div>
      {error && <p className="error" role="alert" data-testid="send-error">{error}</p>}
    </form>
  );
}
