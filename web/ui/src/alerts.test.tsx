import { describe, expect, it, vi } from 'vitest';
import { fireEvent, render, screen, waitFor } from '@testing-library/react';
import { alertExploreLink, combine, extraBaseline, describeRule, featureRows, mergeAlert, ruleBody, EMPTY_RULE, visibleAlerts } from './alerts';
import { parseState } from './state';
import { RulesEditor } from './components/RulesEditor';
import { PatternsPage } from './pages/Patterns';
import type { Alert, AlertRule } from './types';

const alert = (over: Partial<Alert> = {}): Alert => ({
  id: 'a1',
  kind: 'anomaly',
  detector: 'error_burst',
  rule_id: null,
  source: '1/checkout/web-1',
  title: 'error_burst on 1/checkout/web-1',
  status: 'open',
  occurrences: 1,
  first_fired: '2026-11-27T10:00:00.000000000Z',
  last_fired: '2026-11-27T10:00:00.000000000Z',
  window: { start: '2026-11-27T09:59:50.123456789Z', end: '2026-11-27T10:00:00.123456789Z' },
  score: 40,
  threshold: 8,
  features: { count: 30, count_error: 25, share_error: 0.83 },
  baseline: { count: 10, mean_count_error: 1, expected_count: 10 },
  samples: [{ message: 'boom', severity: 'ERROR' }],
  query: 'service:"checkout" AND level:>=error',
  search: { q: 'service:"checkout" AND level:>=error', since: '2026-11-27T09:59:50.123456789Z', until: '2026-11-27T10:00:00.123456789Z' },
  ...over,
});

const rule = (over: Partial<AlertRule> = {}): AlertRule => ({
  id: 7,
  name: 'checkout errors',
  query: 'level:error',
  window_seconds: 60,
  condition: 'above',
  threshold: 5,
  cooldown_seconds: 300,
  enabled: true,
  created_at: '2026-11-27T10:00:00',
  updated_at: '2026-11-27T10:00:00',
  ...over,
});

const json = (body: unknown, status = 200) => new Response(status === 204 ? null : JSON.stringify(body), { status });

describe('merging alerts', () => {
  it('adds new alerts newest first and updates a repeated firing in place', () => {
    const older = alert({ id: 'old', last_fired: '2026-11-27T09:00:00Z' });
    let list = mergeAlert([older], alert());
    expect(list.map((a) => a.id)).toEqual(['a1', 'old']);
    list = mergeAlert(list, alert({ occurrences: 2, score: 50, last_fired: '2026-11-27T10:00:10Z' }));
    expect(list).toHaveLength(2);
    expect(list[0]).toMatchObject({ id: 'a1', occurrences: 2, score: 50 });
  });

  it('keeps an acknowledgement and re-opens a resolved alert, like the alert store', () => {
    const acked = [alert({ status: 'acknowledged', acknowledged_by: 'ann' })];
    expect(mergeAlert(acked, alert({ occurrences: 2 }))[0]).toMatchObject({ status: 'acknowledged', occurrences: 2, acknowledged_by: 'ann' });
    const resolved = [alert({ status: 'resolved' })];
    expect(mergeAlert(resolved, alert({ occurrences: 2 }))[0].status).toBe('open');
    // this client's own change always wins
    expect(mergeAlert(acked, alert({ status: 'resolved' }), true)[0].status).toBe('resolved');
  });

  it('ignores a stale copy and combines the stored list with live firings', () => {
    const live = alert({ occurrences: 3 });
    expect(mergeAlert([live], alert({ occurrences: 2 }))[0].occurrences).toBe(3);
    const stored = [alert({ occurrences: 2, status: 'acknowledged' }), alert({ id: 'b', last_fired: '2026-11-27T08:00:00Z' })];
    const out = combine(stored, [live, alert({ id: 'c', last_fired: '2026-11-27T11:00:00Z' })]);
    expect(out.map((a) => [a.id, a.status, a.occurrences])).toEqual([
      ['c', 'open', 1],
      ['a1', 'acknowledged', 3],
      ['b', 'open', 1],
    ]);
    expect(visibleAlerts(out, 'acknowledged').map((a) => a.id)).toEqual(['a1']);
  });
});

describe('explaining an alert', () => {
  it('links to Explore with its query over its window rounded out to seconds', () => {
    const state = parseState(new URL(alertExploreLink(alert())!, 'http://x').search);
    expect(state.q).toBe('service:"checkout" AND level:>=error');
    expect(state.since).toBe('2026-11-27T09:59:50.000Z');
    expect(state.until).toBe('2026-11-27T10:00:01.000Z');
    expect(alertExploreLink(alert({ search: undefined, query: undefined }))).toBeNull();
  });

  it('puts features beside baselines, most moved first', () => {
    const rows = featureRows(alert());
    expect(rows[0]).toMatchObject({ name: 'count_error', value: 25, baseline: 1, ratio: 25 });
    expect(rows.find((r) => r.name === 'share_error')).toMatchObject({ baseline: null, ratio: null });
    expect(rows.some((r) => r.name === 'expected_count')).toBe(false);
    expect(extraBaseline(alert())).toEqual([['expected_count', 10]]);
  });
});

describe('rule form', () => {
  it('checks fields before sending and builds the body', () => {
    const bad = ruleBody({ ...EMPTY_RULE, threshold: '1.5' });
    expect('errors' in bad && Object.keys(bad.errors).sort()).toEqual(['name', 'query', 'threshold']);
    const good = ruleBody({ ...EMPTY_RULE, name: ' errs ', query: 'level:error', threshold: '10' });
    expect(good).toEqual({ body: { name: 'errs', query: 'level:error', window_seconds: 60, condition: 'above', threshold: 10, cooldown_seconds: 300, enabled: true } });
    expect(describeRule(rule({ condition: 'below', threshold: 1 }))).toBe('fewer than 1 events in 60 s');
  });

  it('shows a viewer the rules without any way to change them', async () => {
    globalThis.fetch = vi.fn(async () => json({ rules: [rule()] })) as typeof fetch;
    render(<RulesEditor canEdit={false} />);
    await screen.findByText('checkout errors');
    expect(screen.queryByRole('button', { name: /Edit rule/ })).toBeNull();
    expect(screen.queryByRole('button', { name: /Delete rule/ })).toBeNull();
    expect(screen.queryByRole('form', { name: 'New alert rule' })).toBeNull();
    expect(screen.getByTestId('rules-readonly')).toBeTruthy();
  });

  it('shows the API validation error in words beside its field', async () => {
    const calls: [string, RequestInit | undefined][] = [];
    globalThis.fetch = vi.fn(async (url: RequestInfo | URL, init?: RequestInit) => {
      calls.push([String(url), init]);
      if (init?.method === 'POST') return json({ error: 'invalid_input', detail: "query: expected a value at 6", field: 'query' }, 422);
      return json({ rules: [] });
    }) as typeof fetch;
    render(<RulesEditor canEdit />);
    await screen.findByText(/No alert rules yet/);
    fireEvent.change(screen.getByLabelText('Rule name'), { target: { value: 'broken' } });
    fireEvent.change(screen.getByLabelText('Query (events counted)'), { target: { value: 'level:' } });
    fireEvent.change(screen.getByLabelText('Threshold (events)'), { target: { value: '3' } });
    fireEvent.click(screen.getByRole('button', { name: 'Create rule' }));
    expect((await screen.findByRole('alert')).textContent).toBe('The rule was not created: query: expected a value at 6');
    expect(screen.getByLabelText('Query (events counted)').getAttribute('aria-invalid')).toBe('true');
    const post = calls.find(([, init]) => init?.method === 'POST')!;
    expect(JSON.parse(String(post[1]!.body))).toMatchObject({ name: 'broken', query: 'level:', threshold: 3 });
  });
});

describe('Patterns page', () => {
  it('lists templates with a sparkline each, marks new ones and links to Explore', async () => {
    const pattern = (id: string, template: string, isNew: boolean) => ({
      template_id: id, template, count: 40, new: isNew, first_seen: '2026-11-27T10:00:00Z', last_seen: '2026-11-27T10:10:00Z',
      first_seen_in_range: '2026-11-27T10:00:00Z', last_seen_in_range: '2026-11-27T10:10:00Z', trend: [1, 5, 3], samples: [], query: `template:${id}`,
    });
    globalThis.fetch = vi.fn(async () => json({ since: '', until: '', interval_seconds: 60, trend_start: '', total: 80, patterns: [pattern('aa', 'checkout step <NUM>', true), pattern('bb', 'payment ok', false)] })) as typeof fetch;
    render(<PatternsPage search="?since=6h" />);
    await screen.findByTestId('patterns');
    expect(screen.getAllByRole('img', { name: /Events per 60 s of template/ })).toHaveLength(2);
    expect(screen.getAllByText('new')).toHaveLength(1);
    const link = screen.getByRole('link', { name: /template checkout step <NUM> in Explore/ });
    expect(link.getAttribute('href')).toBe('/explore?q=template%3Aaa&since=6h');
    await waitFor(() => expect(screen.getByTestId('patterns-summary').textContent).toMatch(/2 templates over 80 events/));
  });

  it('says so in words when the API fails', async () => {
    globalThis.fetch = vi.fn(async () => json({ error: 'unavailable', detail: 'Elasticsearch is unreachable; retry shortly' }, 503)) as typeof fetch;
    render(<PatternsPage search="" />);
    expect((await screen.findByRole('alert')).textContent).toContain('Elasticsearch is unreachable');
  });
});
