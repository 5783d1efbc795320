// Explore: query, time range, histogram, results with context, and the live tail.
import { useCallback, useEffect, useMemo, useRef, useState } from 'react';
import { api, ApiError } from '../api';
import { navigate } from '../router';
import { formatState, parseState, zoomTo, type ExploreState } from '../state';
import { fieldNames } from '../query';
import type { FieldFacet, HistogramResult, LogHit, SearchResult } from '../types';
import { QueryBar, type QueryBarHandle, type QueryError } from '../components/QueryBar';
import { TimeRange } from '../components/TimeRange';
import { Histogram } from '../components/Histogram';
import { LogList } from '../components/LogList';
import { ContextPanel } from '../components/ContextPanel';
import { Empty, ErrorBox, Spinner } from '../components/Status';
import { useTail } from '../tail';

const PAGE = 100;

interface Results {
  hits: LogHit[];
  total: SearchResult['total'] | null;
  cursor: string | null;
  partial: boolean;
}

export function ExplorePage({ search }: { search: string }) {
  const state = useMemo(() => parseState(search), [search]);
  const [draft, setDraft] = useState(state.q);
  const [run, setRun] = useState(0);
  const [results, setResults] = useState<Results | null>(null);
  const [histogram, setHistogram] = useState<HistogramResult | null>(null);
  const [loading, setLoading] = useState(false);
  const [more, setMore] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [queryError, setQueryError] = useState<QueryError | null>(null);
  const [fields, setFields] = useState<FieldFacet[]>([]);
  const [paused, setPaused] = useState(false);
  const bar = useRef<QueryBarHandle>(null);

  const update = useCallback(
    (next: Partial<ExploreState>, replace = false) =>
      navigate(`/explore${formatState({ ...parseState(window.location.search), ...next })}`, { replace }),
    [],
  );

  useEffect(() => {
    setDraft(state.q);
  }, [state.q]);

  // `/` focuses the query from anywhere outside a text field.
  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      const target = e.target as HTMLElement;
      if (e.key === '/' && !['INPUT', 'TEXTAREA', 'SELECT'].includes(target.tagName) && !target.isContentEditable) {
        e.preventDefault();
        bar.current?.focus();
      }
    };
    window.addEventListener('keydown', onKey);
    return () => window.removeEventListener('keydown', onKey);
  }, []);

  const params = useMemo(
    () => ({ q: state.q, since: state.since, until: state.until || undefined }),
    [state.q, state.since, state.until],
  );

  // Search and histogram, whenever the query, range or order changes (or Enter is pressed).
  useEffect(() => {
    if (state.live) return;
    const controller = new AbortController();
    setLoading(true);
    setError(null);
    setQueryError(null);
    const opts = { signal: controller.signal };
    Promise.all([
      api<SearchResult>('/api/v1/search', { ...opts, params: { ...params, limit: PAGE, order: state.order } }),
      api<HistogramResult>('/api/v1/histogram', { ...opts, params }),
    ])
      .then(([found, counts]) => {
        setResults({ hits: found.hits, total: found.total, cursor: found.next_cursor, partial: found.partial });
        setHistogram(counts);
      })
      .catch((exc) => {
        if (exc.name === 'AbortError') return;
        if (exc instanceof ApiError && exc.status === 400 && exc.body.parameter === 'q') {
          setQueryError({ message: String(exc.body.detail ?? exc.message), position: exc.position });
        } else setError(exc);
        setResults(null);
        setHistogram(null);
      })
      .finally(() => !controller.signal.aborted && setLoading(false));
    return () => controller.abort();
  }, [params, state.order, state.live, run]);

  // Field names for completion, from the same range.
  useEffect(() => {
    const controller = new AbortController();
    api<{ fields: FieldFacet[] }>('/api/v1/fields', { params: { since: state.since, until: state.until || undefined }, signal: controller.signal })
      .then((r) => setFields(r.fields))
      .catch(() => setFields([]));
    return () => controller.abort();
  }, [state.since, state.until]);

  const loadMore = useCallback(() => {
    if (!results?.cursor || more || loading) return;
    setMore(true);
    api<SearchResult>('/api/v1/search', { params: { ...params, limit: PAGE, order: state.order, cursor: results.cursor } })
      .then((found) =>
        setResults((r) => r && { ...r, hits: [...r.hits, ...found.hits], cursor: found.next_cursor, partial: r.partial || found.partial }),
      )
      .catch(setError)
      .finally(() => setMore(false));
  }, [results, more, loading, params, state.order]);

  const tail = useTail(state.q, '5m', state.live, paused);
  const runQuery = () => {
    if (draft === state.q) setRun((n) => n + 1);
    else update({ q: draft, context: '' });
  };
  const onZoom = useCallback((a: number, b: number) => update(zoomTo(parseState(window.location.search), a, b)), [update]);
  const onFilter = (field: string, value: string) => {
    const name = field === 'template' ? 'template' : field;
    const term = `${name}:"${value.replace(/(["\\])/g, '\\$1')}"`;
    update({ q: state.q ? `${state.q} AND ${term}` : term, context: '' });
  };
  const completionFields = useMemo(() => fieldNames(fields.map((f) => f.field)), [fields]);

  return (
    <section className="explore" aria-labelledby="explore-title">
      <h1 id="explore-title" className="sr-only">
        Explore
      </h1>
      <form
        className="toolbar"
        onSubmit={(e) => {
          e.preventDefault();
          runQuery();
        }}
      >
        <QueryBar ref={bar} value={draft} fields={completionFields} error={queryError} onChange={setDraft} onRun={runQuery} />
        <TimeRange since={state.since} until={state.until} onChange={(since, until) => update({ since, until, live: false })} />
        <button type="submit" className="primary">
          Search
        </button>
        <label className="toggle">
          <input type="checkbox" checked={state.live} onChange={(e) => update({ live: e.target.checked, until: '' })} /> Live
        </label>
      </form>

      {state.live ? (
        <div className="live">
          <div className="live-bar" role="status" aria-live="polite">
            <span className={`dot ${tail.status}`} aria-hidden="true" />
            {tail.status === 'live' && (paused ? `Paused — ${tail.buffered} new events held` : 'Live: new events appear at the top')}
            {tail.status === 'connecting' && 'Connecting to the live tail…'}
            {tail.status === 'reconnecting' && tail.error}
            {tail.status === 'error' && <span className="form-error">{tail.error}</span>}
            <button type="button" onClick={() => setPaused(!paused)} aria-pressed={paused}>
              {paused ? 'Resume' : 'Pause'}
            </button>
          </div>
          {tail.dropped > 0 && (
            <p className="notice" role="alert">
              {tail.dropped} events were dropped because the browser could not keep up. Narrow the filter to see all of them.
            </p>
          )}
          {tail.events.length === 0 ? (
            <Empty>Waiting for events{state.q ? ' matching the query' : ''}…</Empty>
          ) : (
            <LogList hits={tail.events} label="Live events" onContext={(h) => update({ context: h.id })} onFilter={onFilter} />
          )}
        </div>
      ) : (
        <>
          {histogram && <Histogram data={histogram} onZoom={onZoom} />}
          <div className="summary-line" role="status" aria-live="polite">
            {loading && <Spinner label="Searching" />}
            {!loading && results && (
              <span data-testid="total">
                {results.total?.relation === 'gte' ? 'More than ' : ''}
                {results.total?.value.toLocaleString()} events
                {results.partial && ' (partial: Elasticsearch timed out on some shards)'}
              </span>
            )}
          </div>
          {error !== null && <ErrorBox error={error} onRetry={() => setRun((n) => n + 1)} />}
          {!loading && results && results.hits.length === 0 && (
            <Empty>No logs match this query in this time range. Widen the range or simplify the query.</Empty>
          )}
          {results && results.hits.length > 0 && (
            <LogList
              hits={results.hits}
              label="Search results"
              onNearEnd={loadMore}
              onContext={(h) => update({ context: h.id })}
              onFilter={onFilter}
              footer={
                <div className="list-footer">
                  {more ? <Spinner label="Loading more" /> : results.cursor ? '' : `End of results (${results.hits.length})`}
                </div>
              }
            />
          )}
        </>
      )}
      {state.context && <ContextPanel id={state.context} onClose={() => update({ context: '' })} />}
    </section>
  );
}
