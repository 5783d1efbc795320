// Time range picker: relative spans and an absolute from/to, closed by Esc.
import { useEffect, useRef, useState } from 'react';
import { describeRange, validTime } from '../state';

const PRESETS = ['5m', '15m', '1h', '6h', '24h', '7d', '30d'];

interface Props {
  since: string;
  until: string;
  onChange: (since: string, until: string) => void;
}

/** `datetime-local` value for an ISO instant, in local time. */
function toLocalInput(iso: string): string {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '';
  const pad = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

export function TimeRange({ since, until, onChange }: Props) {
  const [open, setOpen] = useState(false);
  const [from, setFrom] = useState('');
  const [to, setTo] = useState('');
  const [error, setError] = useState('');
  const box = useRef<HTMLDivElement>(null);

  useEffect(() => {
    if (!open) return;
    const now = Date.now();
    setFrom(validTime(since) && !/^\d+[smhdw]$/.test(since) ? toLocalInput(since) : toLocalInput(new Date(now - 3_600_000).toISOString()));
    setTo(until ? toLocalInput(until) : toLocalInput(new Date(now).toISOString()));
    setError('');
    const close = (e: MouseEvent) => {
      if (box.current && !box.current.contains(e.target as Node)) setOpen(false);
    };
    document.addEventListener('mousedown', close);
    return () => document.removeEventListener('mousedown', close);
  }, [open, since, until]);

  return (
    <div
      className="timerange"
      ref={box}
      onKeyDown={(e) => {
        if (e.key === 'Escape' && open) {
          e.stopPropagation();
          setOpen(false);
        }
      }}
    >
      <button type="button" aria-haspopup="dialog" aria-expanded={open} onClick={() => setOpen(!open)} data-testid="timerange">
        {describeRange({ since, until })}
      </button>
      {open && (
        <div className="popover" role="dialog" aria-label="Time range">
          <fieldset>
            <legend>Relative</legend>
            <div className="presets">
              {PRESETS.map((p) => (
                <button
                  key={p}
                  type="button"
                  aria-pressed={since === p && !until}
                  onClick={() => {
                    onChange(p, '');
                    setOpen(false);
                  }}
                >
                  Last {p}
                </button>
              ))}
            </div>
          </fieldset>
          <fieldset>
            <legend>Absolute</legend>
            <label htmlFor="range-from">From</label>
            <input id="range-from" type="datetime-local" step="1" value={from} onChange={(e) => setFrom(e.target.value)} />
            <label htmlFor="range-to">To</label>
            <input id="range-to" type="datetime-local" step="1" value={to} onChange={(e) => setTo(e.target.value)} />
            {error && <p className="form-error" role="alert">{error}</p>}
            <button
              type="button"
              className="primary"
              onClick={() => {
                const a = new Date(from);
                const b = new Date(to);
                if (Number.isNaN(a.getTime()) || Number.isNaN(b.getTime())) return setError('Enter both dates.');
                if (a >= b) return setError('"From" must be before "To".');
                onChange(a.toISOString(), b.toISOString());
                setOpen(false);
              }}
            >
              Apply
            </button>
          </fieldset>
        </div>
      )}
    </div>
  );
}
