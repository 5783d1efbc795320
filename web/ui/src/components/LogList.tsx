// A virtualised list of log events; rows expand to every field and link to their context.
import { useEffect, useRef, useState } from 'react';
import { useVirtualizer } from '@tanstack/react-virtual';
import type { LogHit } from '../types';

interface Props {
  hits: LogHit[];
  /** Called when the list is scrolled near its end (infinite scroll). */
  onNearEnd?: () => void;
  onContext?: (hit: LogHit) => void;
  onFilter?: (field: string, value: string) => void;
  footer?: React.ReactNode;
  label: string;
}

export function formatTime(iso: string): string {
  // Keep the sub-second digits the API gives (nanoseconds), shown to the millisecond.
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  const pad = (n: number, w = 2) => String(n).padStart(w, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

export function LevelBadge({ level }: { level: string | null }) {
  const name = (level || 'UNKNOWN').toUpperCase();
  return <span className={`level level-${name.toLowerCase()}`}>{name}</span>;
}

function Message({ hit }: { hit: LogHit }) {
  const marked = hit.highlight?.message?.[0];
  // The API escapes the text (encoder: html) and adds only <mark> tags around matches.
  if (marked) return <span className="msg" dangerouslySetInnerHTML={{ __html: marked }} />;
  return <span className="msg">{hit.message}</span>;
}

function Details({ hit, onContext, onFilter }: { hit: LogHit; onContext?: Props['onContext']; onFilter?: Props['onFilter'] }) {
  const fields: [string, string | null | undefined][] = [
    ['time', hit.time],
    ['level', hit.level],
    ['service', hit.service],
    ['host', hit.host],
    ['message', hit.message],
    ['template', hit.template_id],
    ['trace_id', hit.trace_id],
    ['span_id', hit.span_id],
    ['id', hit.id],
    ...Object.entries(hit.attributes || {}).map(([k, v]) => [`attributes.${k}`, v] as [string, string]),
  ];
  return (
    <div className="details">
      <table>
        <tbody>
          {fields
            .filter(([, v]) => v !== null && v !== undefined && v !== '')
            .map(([k, v]) => (
              <tr key={k}>
                <th scope="row">{k}</th>
                <td>
                  <span className="value">{String(v)}</span>
                  {onFilter && !['time', 'id', 'message'].includes(k) && (
                    <button type="button" className="link" aria-label={`Filter on ${k} ${v}`} onClick={() => onFilter(k, String(v))}>
                      filter
                    </button>
                  )}
                </td>
              </tr>
            ))}
        </tbody>
      </table>
      {onContext && (
        <button type="button" onClick={() => onContext(hit)}>
          Show surrounding context
        </button>
      )}
    </div>
  );
}

/** One event: a one-line summary that toggles the full fields and the context button. */
export function LogRow({ hit, expanded, onToggle, onContext, onFilter }: { hit: LogHit; expanded: boolean; onToggle: () => void; onContext?: Props['onContext']; onFilter?: Props['onFilter'] }) {
  return (
    <>
      <button type="button" className="summary" aria-expanded={expanded} onClick={onToggle}>
        <span className="chev" aria-hidden="true">{expanded ? '▾' : '▸'}</span>
        <time dateTime={hit.time}>{formatTime(hit.time)}</time>
        <LevelBadge level={hit.level} />
        <span className="svc">{hit.service}</span>
        <span className="host">{hit.host}</span>
        <Message hit={hit} />
      </button>
      {expanded && <Details hit={hit} onContext={onContext} onFilter={onFilter} />}
    </>
  );
}

export function LogList({ hits, onNearEnd, onContext, onFilter, footer, label }: Props) {
  const parent = useRef<HTMLDivElement>(null);
  const [open, setOpen] = useState<Set<string>>(new Set());
  const virtualizer = useVirtualizer({
    count: hits.length,
    getScrollElement: () => parent.current,
    estimateSize: () => 30,
    overscan: 12,
    getItemKey: (i) => hits[i].id,
    initialRect: { width: 1000, height: 600 }, // until measured (and where nothing is laid out)
  });
  const items = virtualizer.getVirtualItems();
  const last = items.length ? items[items.length - 1].index : -1;

  useEffect(() => {
    if (onNearEnd && hits.length && last >= hits.length - 20) onNearEnd();
  }, [last, hits.length, onNearEnd]);

  const toggle = (id: string) =>
    setOpen((s) => {
      const next = new Set(s);
      if (next.has(id)) next.delete(id);
      else next.add(id);
      return next;
    });

  return (
    <div className="loglist" ref={parent} role="list" aria-label={label} data-testid="results">
      <div style={{ height: virtualizer.getTotalSize(), position: 'relative' }}>
        {items.map((item) => {
          const hit = hits[item.index];
          const expanded = open.has(hit.id);
          return (
            <div
              key={item.key}
              role="listitem"
              className={`row${expanded ? ' expanded' : ''}`}
              data-index={item.index}
              data-id={hit.id}
              ref={virtualizer.measureElement}
              style={{ position: 'absolute', top: 0, left: 0, width: '100%', transform: `translateY(${item.start}px)` }}
            >
<LogRow hit={hit} expanded={expanded} onToggle={() => toggle(hit.id)} onContext={onContext} onFilter={onFilter} />
            </div>
          );
        })}
      </div>
      {footer}
    </div>
  );
}
