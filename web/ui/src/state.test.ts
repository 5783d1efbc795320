import { describe, expect, it } from 'vitest';
import { DEFAULT_STATE, describeRange, formatState, parseState, relativeMs, resolveRange, validTime, zoomTo } from './state';

describe('Explore URL state', () => {
  it('round-trips every field through the query string', () => {
    const state = { q: 'level:error AND "timed out"', since: '2026-11-27T10:00:00.000Z', until: '2026-11-27T11:00:00.000Z', order: 'oldest' as const, live: true, context: 'logs.raw/0/42' };
    expect(parseState(formatState(state))).toEqual(state);
  });

  it('leaves defaults out of links and reads an empty query string as the defaults', () => {
    expect(formatState(DEFAULT_STATE)).toBe('');
    expect(parseState('')).toEqual(DEFAULT_STATE);
    expect(formatState({ ...DEFAULT_STATE, q: 'service:api' })).toBe('?q=service%3Aapi');
  });

  it('falls back on bad values', () => {
    expect(parseState('?order=sideways&live=yes&since=').order).toBe('newest');
    expect(parseState('?live=yes').live).toBe(false);
    expect(parseState('?since=').since).toBe('15m');
  });

  it('resolves relative and absolute ranges', () => {
    const now = Date.parse('2026-11-27T12:00:00Z');
    expect(relativeMs('15m')).toBe(900_000);
    expect(relativeMs('2h')).toBe(7_200_000);
    expect(relativeMs('soon')).toBeNull();
    expect(resolveRange({ since: '1h', until: '' }, now)).toEqual([now - 3_600_000, now]);
    expect(resolveRange({ since: '2026-11-27T10:00:00Z', until: '2026-11-27T11:00:00Z' }, now)).toEqual([
      Date.parse('2026-11-27T10:00:00Z'),
      Date.parse('2026-11-27T11:00:00Z'),
    ]);
    expect(validTime('7d')).toBe(true);
    expect(validTime('2026-11-27T10:00:00Z')).toBe(true);
    expect(validTime('yesterday-ish')).toBe(false);
    expect(describeRange({ since: '24h', until: '' })).toBe('Last 24 hours');
    expect(describeRange({ since: '1m', until: '' })).toBe('Last 1 minute');
  });

  it('zooming sets an absolute range and stops live', () => {
    const a = Date.parse('2026-11-27T10:00:00.250Z');
    const b = Date.parse('2026-11-27T10:05:00.750Z');
    const zoomed = zoomTo({ ...DEFAULT_STATE, q: 'x', live: true }, a, b);
    expect(zoomed).toMatchObject({ q: 'x', since: '2026-11-27T10:00:00.250Z', until: '2026-11-27T10:05:00.750Z', live: false });
  });
});
