// Patterns page logic: its URL state and the link from a template to Explore.
import { DEFAULT_STATE, formatState } from './state';

export interface PatternsState {
  /** Narrows the events counted (search syntax); empty = every event. */
  q: string;
  since: string;
  until: string;
}

export const PATTERNS_DEFAULT: PatternsState = { q: '', since: '1h', until: '' };

export function parsePatternsState(search: string): PatternsState {
  const p = new URLSearchParams(search);
  return {
    q: p.get('q') ?? '',
    since: (p.get('since') ?? '').trim() || PATTERNS_DEFAULT.since,
    until: p.get('until') ?? '',
  };
}

export function formatPatternsState(state: PatternsState): string {
  const p = new URLSearchParams();
  if (state.q) p.set('q', state.q);
  if (state.since !== PATTERNS_DEFAULT.since) p.set('since', state.since);
  if (state.until) p.set('until', state.until);
  const text = p.toString();
  return text ? `?${text}` : '';
}

/** Explore filtered by one template, keeping the page's query and time range. */
export function templateExploreLink(templateQuery: string, state: PatternsState): string {
  // a bare id is a template id; else the row's `query` (`(template:a OR template:b)`)
  const term = /^[0-9a-f]+$/.test(templateQuery) ? `template:${templateQuery}` : templateQuery;
  return `/explore${formatState({ ...DEFAULT_STATE, q: state.q ? `${term} AND (${state.q})` : term, since: state.since, until: state.until })}`;
}

/** Template text with its placeholders (`<NUM>`, `<*>`, …) split out, for highlighting. */
export function templateParts(template: string): { text: string; variable: boolean }[] {
  const parts: { text: string; variable: boolean }[] = [];
  const re = /<[A-Z*]+>/g;
  let last = 0;
  for (let m = re.exec(template); m; m = re.exec(template)) {
    if (m.index > last) parts.push({ text: template.slice(last, m.index), variable: false });
    parts.push({ text: m[0], variable: true });
    last = m.index + m[0].length;
  }
  if (last < template.length) parts.push({ text: template.slice(last), variable: false });
  return parts;
}
