import { describe, expect, it } from 'vitest';
import { reduceTail, tailUrl, type TailState } from './tail';
import type { LogHit } from './types';

const hit = (id: string): LogHit => ({ id, time: '2026-11-27T10:00:00Z', level: 'INFO', service: 's', host: 'h', message: id, attributes: {} });
const initial: TailState = { events: [], status: 'connecting', error: '', dropped: 0, buffered: 0 };

describe('live tail', () => {
  it('puts new events on top, counts dropped ones, reports errors', () => {
    let [s, pending] = reduceTail(initial, [], { type: 'ready', history: 0 }, false);
    expect(s.status).toBe('live');
    [s, pending] = reduceTail(s, pending, { type: 'event', event: hit('a') }, false);
    [s, pending] = reduceTail(s, pending, { type: 'event', event: hit('b') }, false);
    expect(s.events.map((e) => e.id)).toEqual(['b', 'a']);
    [s, pending] = reduceTail(s, pending, { type: 'notice', dropped: 7, detail: 'slow' }, false);
    [s, pending] = reduceTail(s, pending, { type: 'notice', dropped: 3, detail: 'slow' }, false);
    expect(s.dropped).toBe(10);
    [s] = reduceTail(s, pending, { type: 'error', detail: 'bad filter' }, false);
    expect(s).toMatchObject({ status: 'error', error: 'bad filter' });
  });

  it('holds events while paused', () => {
    let [s, pending] = reduceTail(initial, [], { type: 'event', event: hit('a') }, true);
    [s, pending] = reduceTail(s, pending, { type: 'event', event: hit('b') }, true);
    expect(s.events).toEqual([]);
    expect(s.buffered).toBe(2);
    expect(pending.map((e) => e.id)).toEqual(['b', 'a']);
  });

  it('builds the socket URL with the filter and token', () => {
    const url = tailUrl('level:error', '5m', 'tok', { protocol: 'https:', host: 'laas.example' } as Location);
    expect(url).toBe('wss://laas.example/api/v1/tail?token=tok&q=level%3Aerror&since=5m');
  });
});
