// The lines around one event from the same source, in a dialog (Esc closes).
import { useEffect, useRef, useState } from 'react';
import { api } from '../api';
import type { ContextResult } from '../types';
import { ErrorBox, Spinner } from './Status';
import { formatTime, LevelBadge } from './LogList';

export function ContextPanel({ id, onClose }: { id: string; onClose: () => void }) {
  const [data, setData] = useState<ContextResult | null>(null);
  const [error, setError] = useState<unknown>(null);
  const dialog = useRef<HTMLDivElement>(null);
  const anchor = useRef<HTMLLIElement>(null);

  useEffect(() => {
    const controller = new AbortController();
    setData(null);
    setError(null);
    api<ContextResult>(`/api/v1/logs/${encodeURIComponent(id).replace(/%2F/g, '/')}/context`, {
      params: { before: 25, after: 25 },
      signal: controller.signal,
    })
      .then(setData)
      .catch((e) => e.name !== 'AbortError' && setError(e));
    return () => controller.abort();
  }, [id]);

  useEffect(() => {
    dialog.current?.focus();
    const onKey = (e: KeyboardEvent) => e.key === 'Escape' && onClose();
    window.addEventListener('keydown', onKey);
    return () => window.removeEventListener('keydown', onKey);
  }, [onClose]);

  useEffect(() => {
    anchor.current?.scrollIntoView({ block: 'center' }); // returns a Promise in new Chromium: never the cleanup
  }, [data]);

  const line = (hit: ContextResult['event'], kind: string) => (
    <li key={hit.id} className={`ctx-${kind}`} ref={kind === 'anchor' ? anchor : undefined} aria-current={kind === 'anchor' ? 'true' : undefined}>
      <time dateTime={hit.time}>{formatTime(hit.time)}</time> <LevelBadge level={hit.level} /> <span className="msg">{hit.message}</span>
    </li>
  );

  return (
    <div className="overlay" onMouseDown={(e) => e.target === e.currentTarget && onClose()}>
      <div className="dialog" role="dialog" aria-modal="true" aria-labelledby="ctx-title" tabIndex={-1} ref={dialog} data-testid="context">
        <header>
          <h2 id="ctx-title">
            Context{data ? ` — ${data.event.service ?? ''} on ${data.event.host ?? ''}` : ''}
          </h2>
          <button type="button" onClick={onClose} aria-label="Close context">
            ✕
          </button>
        </header>
        {!data && !error && <Spinner label="Loading context" />}
        {error !== null && <ErrorBox error={error} />}
        {data && (
          <ol className="context">
            {data.before.map((h) => line(h, 'before'))}
            {line(data.event, 'anchor')}
            {data.after.map((h) => line(h, 'after'))}
          </ol>
        )}
      </div>
    </div>
  );
}
