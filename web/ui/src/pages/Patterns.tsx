// Patterns: the tenant's log templates in a time range with counts, a trend sparkline each and
// new ones marked; a template opens Explore filtered by `template:<id>` over the same range.
import { useCallback, useEffect, useMemo, useState } from 'react';
import { api, ApiError } from '../api';
import { navigate } from '../router';
import { formatPatternsState, parsePatternsState, templateExploreLink, templateParts, type PatternsState } from '../patterns';
import { describeRange } from '../state';
import type { Pattern, PatternsResult } from '../types';
import { Sparkline } from '../components/Sparkline';
import { TimeRange } from '../components/TimeRange';
import { Empty, ErrorBox, Spinner } from '../components/Status';

function TemplateText({ template }: { template: string }) {
  return (
    <code className="template">
      {templateParts(template).map((p, i) => (p.variable ? <span key={i} className="var">{p.text}</span> : p.text))}
    </code>
  );
}

function PatternRow({ pattern, state, interval }: { pattern: Pattern; state: PatternsState; interval: number }) {
  const [open, setOpen] = useState(false);
  const href = templateExploreLink(pattern.query, state);
  const text = pattern.template ?? pattern.samples[0]?.message ?? pattern.template_id;
  const detailsId = `pattern-${pattern.template_id}`;
  return (
    <tr data-template={pattern.template_id} className={pattern.new ? 'new' : undefined}>
      <td className="num">{pattern.count.toLocaleString()}</td>
      <td className="template-cell">
        <a
          href={href}
          aria-label={`Show the ${pattern.count} events of template ${text} in Explore`}
          onClick={(e) => {
            e.preventDefault();
            navigate(href);
          }}
        >
          <TemplateText template={text} />
        </a>
        {pattern.new && (
          <span className="badge new" title={`First seen ${pattern.first_seen ? new Date(pattern.first_seen).toLocaleString() : ''}, inside this range`}>
            new
          </span>
        )}
        {pattern.samples.length > 0 && (
          <button type="button" className="link" aria-expanded={open} aria-controls={detailsId} onClick={() => setOpen(!open)}>
            {open ? 'Hide samples' : 'Samples'}
          </button>
        )}
        {open && (
          <ul className="samples" id={detailsId} aria-label="Sample events">
            {pattern.samples.map((s) => (
              <li key={s.id}>
                <time dateTime={s.time}>{new Date(s.time).toLocaleTimeString()}</time> <span className={`level level-${(s.level ?? '').toLowerCase()}`}>{s.level}</span>{' '}
                {s.service}/{s.host}: {s.message}
              </li>
            ))}
          </ul>
        )}
      </td>
      <td>
        <Sparkline values={pattern.trend} width={140} label={`Events per ${interval} s of template ${text}: ${pattern.trend.join(', ')}`} />
      </td>
      <td>{pattern.first_seen ? <time dateTime={pattern.first_seen}>{new Date(pattern.first_seen).toLocaleString()}</time> : '—'}</td>
      <td>{pattern.last_seen_in_range ? <time dateTime={pattern.last_seen_in_range}>{new Date(pattern.last_seen_in_range).toLocaleString()}</time> : '—'}</td>
    </tr>
  );
}

export function PatternsPage({ search }: { search: string }) {
  const state = useMemo(() => parsePatternsState(search), [search]);
  const [draft, setDraft] = useState(state.q);
  const [result, setResult] = useState<PatternsResult | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [loading, setLoading] = useState(true);
  const [run, setRun] = useState(0);

  useEffect(() => setDraft(state.q), [state.q]);
  const update = useCallback((next: Partial<PatternsState>) => navigate(`/patterns${formatPatternsState({ ...parsePatternsState(window.location.search), ...next })}`), []);

  useEffect(() => {
    const controller = new AbortController();
    setLoading(true);
    setError(null);
    api<PatternsResult>('/api/v1/patterns', { params: { q: state.q, since: state.since, until: state.until || undefined, limit: 100 }, signal: controller.signal })
      .then(setResult)
      .catch((exc) => {
        if (exc.name === 'AbortError') return;
        setResult(null);
        setError(exc);
      })
      .finally(() => !controller.signal.aborted && setLoading(false));
    return () => controller.abort();
  }, [state.q, state.since, state.until, run]);

  const newCount = result?.patterns.filter((p) => p.new).length ?? 0;
  return (
    <section aria-labelledby="patterns-title" className="page">
      <h1 id="patterns-title">Patterns</h1>
      <p className="muted">Log templates mined from the messages (variables such as numbers and ids masked), most frequent first. Open one to see its events in Explore.</p>
      <form
        className="toolbar"
        onSubmit={(e) => {
          e.preventDefault();
          if (draft === state.q) setRun((n) => n + 1);
          else update({ q: draft });
        }}
      >
        <label htmlFor="patterns-q" className="sr-only">
          Only count events matching (search syntax)
        </label>
        <input
          id="patterns-q"
          className="grow"
          value={draft}
          placeholder="Only count events matching… (e.g. service:checkout)"
          onChange={(e) => setDraft(e.target.value)}
          onKeyDown={(e) => e.key === 'Escape' && setDraft(state.q)}
        />
        <TimeRange since={state.since} until={state.until} onChange={(since, until) => update({ since, until })} />
        <button type="submit" className="primary">
          Apply
        </button>
      </form>
      <div className="summary-line" role="status" aria-live="polite">
        {loading && <Spinner label="Loading patterns" />}
        {!loading && result && (
          <span data-testid="patterns-summary">
            {result.patterns.length} templates over {result.total.toLocaleString()} events · {describeRange(state)}
            {newCount > 0 && ` · ${newCount} new`}
          </span>
        )}
      </div>
      {error !== null && (
        <ErrorBox
          error={error instanceof ApiError && error.status === 400 ? new Error(`The filter was refused: ${error.message}`) : error}
          onRetry={() => setRun((n) => n + 1)}
        />
      )}
      {!loading && result && result.patterns.length === 0 && <Empty>No events with a template in this range. Widen the range, or send logs: templates are mined as events arrive.</Empty>}
      {result && result.patterns.length > 0 && (
        <table className="grid patterns" data-testid="patterns">
          <caption className="sr-only">Templates, most frequent first</caption>
          <thead>
            <tr>
              <th scope="col" className="num">Events</th>
              <th scope="col">Template</th>
              <th scope="col">Trend ({result.interval_seconds} s buckets)</th>
              <th scope="col">First seen</th>
              <th scope="col">Last seen</th>
            </tr>
          </thead>
          <tbody>
            {result.patterns.map((p) => (
              <PatternRow key={p.template_id} pattern={p} state={state} interval={result.interval_seconds} />
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}
