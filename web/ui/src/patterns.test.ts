import { describe, expect, it } from 'vitest';
import { formatPatternsState, parsePatternsState, templateExploreLink, templateParts } from './patterns';
import { parseState } from './state';

describe('patterns URL state', () => {
  it('round-trips and leaves defaults out', () => {
    expect(parsePatternsState('')).toEqual({ q: '', since: '1h', until: '' });
    const state = { q: 'service:api', since: '2026-11-27T10:00:00.000Z', until: '2026-11-27T11:00:00.000Z' };
    expect(parsePatternsState(formatPatternsState(state))).toEqual(state);
    expect(formatPatternsState({ q: '', since: '1h', until: '' })).toBe('');
  });

  it('links a template to Explore with the same time range', () => {
    const link = templateExploreLink('0123456789abcdef', { q: '', since: '6h', until: '' });
    const explore = parseState(new URL(link, 'http://x').search);
    expect(link.startsWith('/explore?')).toBe(true);
    expect(explore.q).toBe('template:0123456789abcdef');
    expect(explore.since).toBe('6h');
    const absolute = templateExploreLink('ab', { q: 'host:h1 OR host:h2', since: '2026-11-27T10:00:00.000Z', until: '2026-11-27T11:00:00.000Z' });
    const s = parseState(new URL(absolute, 'http://x').search);
    expect(s.q).toBe('template:ab AND (host:h1 OR host:h2)');
    expect([s.since, s.until]).toEqual(['2026-11-27T10:00:00.000Z', '2026-11-27T11:00:00.000Z']);
  });

  it('links a row that counts several ids (a widened template) with its query', () => {
    const link = templateExploreLink('(template:a1 OR template:b2)', { q: 'service:api', since: '1h', until: '' });
    expect(parseState(new URL(link, 'http://x').search).q).toBe('(template:a1 OR template:b2) AND (service:api)');
  });

  it('splits placeholders out of a template', () => {
    expect(templateParts('checkout step <NUM> order=<NUM> <*>')).toEqual([
      { text: 'checkout step ', variable: false },
      { text: '<NUM>', variable: true },
      { text: ' order=', variable: false },
      { text: '<NUM>', variable: true },
      { text: ' ', variable: false },
      { text: '<*>', variable: true },
    ]);
    expect(templateParts('plain')).toEqual([{ text: 'plain', variable: false }]);
  });
});
