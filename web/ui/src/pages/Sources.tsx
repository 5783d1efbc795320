// Sources: per-source rate, error share and last seen, with sparklines; silent ones stand out.
import { useCallback, useEffect, useState } from 'react';
import { api } from '../api';
import type { Source } from '../types';
import { Sparkline } from '../components/Sparkline';
import { Empty, ErrorBox, Spinner } from '../components/Status';
import { navigate } from '../router';
import { formatState, DEFAULT_STATE } from '../state';

/** A source is silent when nothing arrived for this long (or 10 windows, if longer). */
export const SILENT_AFTER_MS = 5 * 60_000;

/** Rate over the last minute, error share, silence, and counts per window for the last
 * `SPARK_WINDOWS` windows (the snapshot keeps only non-empty windows: gaps are zeros). */
export const SPARK_WINDOWS = 30;

export function sourceStats(s: Source, now: number) {
  const seconds = s.window_seconds || 10;
  const step = seconds * 1000;
  const end = Math.floor(now / step) * step;
  const series = new Array<number>(SPARK_WINDOWS).fill(0);
  let lastMinute = 0;
  for (const w of s.windows ?? []) {
    const start = Date.parse(w.start);
    const slot = SPARK_WINDOWS - 1 - Math.round((end - start) / step);
    if (slot >= 0 && slot < SPARK_WINDOWS) series[slot] += w.count;
    if (start >= now - 60_000) lastMinute += w.count;
  }
  const sev = s.severity ?? {};
  const errors = (sev.ERROR ?? 0) + (sev.FATAL ?? 0);
  const lastSeen = s.last_seen ? Date.parse(s.last_seen) : 0;
  const silent = !lastSeen || now - lastSeen > Math.max(SILENT_AFTER_MS, 10 * step);
  return { rate: lastMinute / 60, errorShare: s.count ? errors / s.count : 0, lastSeen, silent, series };
}

function ago(ms: number): string {
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}

export function SourcesPage() {
  const [sources, setSources] = useState<Source[] | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [now, setNow] = useState(Date.now());

  const load = useCallback(() => {
    setError(null);
    api<{ sources: Source[] }>('/api/v1/sources', { params: { windows: 1 } })
      .then((r) => {
        setSources(r.sources);
        setNow(Date.now());
      })
      .catch(setError);
  }, []);

  useEffect(() => {
    load();
    const timer = setInterval(load, 15_000);
    return () => clearInterval(timer);
  }, [load]);

  return (
    <section aria-labelledby="sources-title" className="page">
      <h1 id="sources-title">Sources</h1>
      <p className="muted">Every service and host that sent logs, from the worker's statistics (refreshed every 15 s).</p>
      {error !== null && <ErrorBox error={error} onRetry={load} />}
      {sources === null && error === null && <Spinner label="Loading sources" />}
      {sources !== null && sources.length === 0 && <Empty>No source has sent logs yet. Send some with an ingest key (Settings → API keys).</Empty>}
      {sources !== null && sources.length > 0 && (
        <table className="grid" data-testid="sources">
          <thead>
            <tr>
              <th scope="col">Service</th>
              <th scope="col">Host</th>
              <th scope="col" className="num">Events</th>
              <th scope="col" className="num">Rate (1 min)</th>
              <th scope="col" className="num">Errors</th>
              <th scope="col">Last seen</th>
              <th scope="col">Last {SPARK_WINDOWS} windows</th>
            </tr>
          </thead>
          <tbody>
            {sources.map((s) => {
              const st = sourceStats(s, now);
              return (
                <tr key={`${s.service}/${s.host}`} className={st.silent ? 'silent' : undefined}>
                  <td>
                    <a
                      href={`/explore${formatState({ ...DEFAULT_STATE, q: `service:"${s.service}" AND host:"${s.host}"`, since: '24h' })}`}
                      onClick={(e) => {
                        e.preventDefault();
                        navigate(e.currentTarget.getAttribute('href')!);
                      }}
                    >
                      {s.service || '(none)'}
                    </a>
                  </td>
                  <td>{s.host || '(none)'}</td>
                  <td className="num">{s.count.toLocaleString()}</td>
                  <td className="num">{st.rate.toFixed(2)}/s</td>
                  <td className={`num${st.errorShare > 0.05 ? ' bad' : ''}`}>{(st.errorShare * 100).toFixed(1)}%</td>
                  <td>
                    {st.lastSeen ? <time dateTime={s.last_seen}>{ago(now - st.lastSeen)}</time> : 'never'}
                    {st.silent && <span className="badge warn">silent</span>}
                  </td>
                  <td>
                    <Sparkline values={st.series} label={`Events per ${s.window_seconds ?? 10} s window for ${s.service} on ${s.host}`} />
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
      )}
    </section>
  );
}
