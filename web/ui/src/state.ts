// Explore's state, all of it in the URL so a link reproduces the view.

export type Order = 'newest' | 'oldest';

export interface ExploreState {
  q: string;
  /** ISO 8601 instant or a relative span like `15m`, `24h`, `7d`. */
  since: string;
  /** ISO 8601 instant; empty means "now". */
  until: string;
  order: Order;
  live: boolean;
  /** Id of the event whose surrounding context is open. */
  context: string;
}

export const DEFAULT_STATE: ExploreState = {
  q: '',
  since: '15m',
  until: '',
  order: 'newest',
  live: false,
  context: '',
};

export const RELATIVE = /^(\d+)(s|m|h|d|w)$/;

/** Read Explore's state from a query string; unknown or bad values fall back to defaults. */
export function parseState(search: string): ExploreState {
  const p = new URLSearchParams(search);
  const since = p.get('since') ?? DEFAULT_STATE.since;
  const order = p.get('order');
  return {
    q: p.get('q') ?? '',
    since: since.trim() || DEFAULT_STATE.since,
    until: p.get('until') ?? '',
    order: order === 'oldest' ? 'oldest' : 'newest',
    live: p.get('live') === '1',
    context: p.get('context') ?? '',
  };
}

/** The query string for a state; defaults are left out to keep links short. */
export function formatState(state: ExploreState): string {
  const p = new URLSearchParams();
  if (state.q) p.set('q', state.q);
  if (state.since !== DEFAULT_STATE.since) p.set('since', state.since);
  if (state.until) p.set('until', state.until);
  if (state.order !== 'newest') p.set('order', state.order);
  if (state.live) p.set('live', '1');
  if (state.context) p.set('context', state.context);
  const text = p.toString();
  return text ? `?${text}` : '';
}

const UNIT_MS: Record<string, number> = {
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  w: 7 * 86_400_000,
};

/** Milliseconds in a relative span (`15m` → 900000), or null if not relative. */
export function relativeMs(text: string): number | null {
  const m = RELATIVE.exec(text.trim());
  return m ? Number(m[1]) * UNIT_MS[m[2]] : null;
}

/** The absolute [since, until] in ms for a state at `now`. */
export function resolveRange(state: Pick<ExploreState, 'since' | 'until'>, now: number): [number, number] {
  const until = state.until ? Date.parse(state.until) : now;
  const rel = relativeMs(state.since);
  const since = rel !== null ? until - rel : Date.parse(state.since);
  return [since, until];
}

/** Whether a time range text is usable (relative span or parseable instant). */
export function validTime(text: string): boolean {
  return relativeMs(text) !== null || !Number.isNaN(Date.parse(text));
}

/** A short description of the range, for the picker's button. */
export function describeRange(state: Pick<ExploreState, 'since' | 'until'>): string {
  if (!state.until && relativeMs(state.since) !== null) return `Last ${humanSpan(state.since)}`;
  const fmt = (t: string) => new Date(t).toLocaleString();
  return `${fmt(state.since)} → ${state.until ? fmt(state.until) : 'now'}`;
}

const UNIT_NAMES: Record<string, string> = { s: 'second', m: 'minute', h: 'hour', d: 'day', w: 'week' };

export function humanSpan(text: string): string {
  const m = RELATIVE.exec(text.trim());
  if (!m) return text;
  const n = Number(m[1]);
  return `${n} ${UNIT_NAMES[m[2]]}${n === 1 ? '' : 's'}`;
}

/** The state after zooming to [startMs, endMs] (absolute; live tail stops). */
export function zoomTo(state: ExploreState, startMs: number, endMs: number): ExploreState {
  return {
    ...state,
    since: new Date(Math.floor(startMs)).toISOString(),
    until: new Date(Math.ceil(endMs)).toISOString(),
    live: false,
  };
}
