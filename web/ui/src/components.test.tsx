import { describe, expect, it, vi } from 'vitest';
import { act, fireEvent, render, screen } from '@testing-library/react';
import { QueryBar } from './components/QueryBar';
import { LogRow } from './components/LogList';
import { SettingsPage } from './pages/Settings';
import { sourceStats } from './pages/Sources';
import { describeError } from './api';
import type { Me } from './types';

const me = (role: string, permissions: string[]): Me => ({
  kind: 'user',
  user: { id: 1, email: 'a@acme.test' },
  tenant: { id: 1, slug: 'acme', name: 'acme' },
  role,
  permissions,
  tenants: [],
});

describe('QueryBar', () => {
  it('runs on Enter and completes field names with Tab', () => {
    let value = '';
    const onRun = vi.fn();
    const onChange = vi.fn((v: string) => (value = v));
    const { rerender } = render(<QueryBar value={value} fields={['level', 'host']} error={null} onChange={onChange} onRun={onRun} />);
    const input = screen.getByRole('combobox', { name: /Query/ });
    fireEvent.change(input, { target: { value: 'lev' } });
    rerender(<QueryBar value={value} fields={['level', 'host']} error={null} onChange={onChange} onRun={onRun} />);
    expect(screen.getByRole('option', { name: 'level:' })).toBeTruthy();
    fireEvent.keyDown(input, { key: 'Tab' });
    expect(onChange).toHaveBeenLastCalledWith('level:');
    fireEvent.keyDown(input, { key: 'Enter' });
    expect(onRun).toHaveBeenCalledTimes(1);
  });

  it('keeps the list open when the user comes back right after leaving', () => {
    vi.useFakeTimers();
    try {
      let value = '';
      const onChange = vi.fn((v: string) => (value = v));
      const bar = () => <QueryBar value={value} fields={['service']} error={null} onChange={onChange} onRun={() => {}} />;
      const { rerender } = render(bar());
      const input = screen.getByRole('combobox', { name: /Query/ });
      fireEvent.blur(input); // a click elsewhere, e.g. on a result row
      fireEvent.focus(input);
      fireEvent.change(input, { target: { value: 'serv' } });
      rerender(bar());
      act(() => vi.advanceTimersByTime(500)); // the blur's close must not fire any more
      expect(screen.getByRole('option', { name: 'service:' })).toBeTruthy();
      fireEvent.keyDown(input, { key: 'Tab' });
      expect(onChange).toHaveBeenLastCalledWith('service:');
    } finally {
      vi.useRealTimers();
    }
  });

  it('shows a syntax error at its position', () => {
    render(<QueryBar value="level:(" fields={[]} error={{ message: 'unclosed group', position: 6 }} onChange={() => {}} onRun={() => {}} />);
    const alert = screen.getByRole('alert');
    expect(alert.textContent).toContain('At position 7: unclosed group');
    expect(alert.querySelector('mark')?.textContent).toBe('(');
    expect(screen.getByRole('combobox').getAttribute('aria-invalid')).toBe('true');
  });
});

describe('LogRow', () => {
  it('expands a row to its fields and asks for context', () => {
    const onContext = vi.fn();
    const hit = { id: 'logs.raw/0/1', time: '2026-11-27T10:00:00Z', level: 'ERROR', service: 'api', host: 'h1', message: 'boom', attributes: { region: 'eu' } };
    const { rerender } = render(<LogRow hit={hit} expanded={false} onToggle={() => rerender(<LogRow hit={hit} expanded onToggle={() => {}} onContext={onContext} />)} onContext={onContext} />);
    fireEvent.click(screen.getByRole('button', { expanded: false }));
    expect(screen.getByText('attributes.region')).toBeTruthy();
    fireEvent.click(screen.getByRole('button', { name: 'Show surrounding context' }));
    expect(onContext).toHaveBeenCalledWith(hit);
  });
});

describe('Settings', () => {
  it('shows a viewer no admin settings', () => {
    render(<SettingsPage me={me('viewer', ['read'])} />);
    expect(screen.queryByRole('heading', { name: 'API keys' })).toBeNull();
    expect(screen.queryByRole('heading', { name: 'Users and roles' })).toBeNull();
    expect(screen.getByTestId('viewer-note')).toBeTruthy();
  });

  it('shows an admin keys and users', () => {
    globalThis.fetch = vi.fn(async () => new Response(JSON.stringify({ keys: [], users: [] }), { status: 200 })) as typeof fetch;
    render(<SettingsPage me={me('admin', ['read', 'manage_own_keys', 'manage_keys', 'manage_users'])} />);
    expect(screen.getByRole('heading', { name: 'API keys' })).toBeTruthy();
    expect(screen.getByRole('heading', { name: 'Users and roles' })).toBeTruthy();
  });
});

describe('errors and statistics', () => {
  it('puts API errors in words', () => {
    expect(describeError(400, { parameter: 'since', detail: "'x' is not a time" })).toBe("Invalid since: 'x' is not a time");
    expect(describeError(0, {})).toMatch(/cannot be reached/);
    expect(describeError(503, {})).toMatch(/retry/);
    expect(describeError(403, { detail: 'viewer may not manage_keys' })).toBe('Not allowed: viewer may not manage_keys.');
  });

  it('computes rate, error share and silence of a source', () => {
    const now = Date.parse('2026-11-27T12:00:00Z');
    const recent = { service: 'api', host: 'h', count: 100, severity: { INFO: 90, ERROR: 10 }, last_seen: '2026-11-27T11:59:55Z', window_seconds: 10, windows: [{ start: '2026-11-27T11:59:30Z', count: 30 }, { start: '2026-11-27T11:59:50Z', count: 30 }] };
    const st = sourceStats(recent, now);
    expect(st.rate).toBe(1);
    expect(st.errorShare).toBe(0.1);
    expect(st.silent).toBe(false);
    expect(st.series.slice(-4)).toEqual([30, 0, 30, 0]); // the last slot is the window in progress
    expect(sourceStats({ ...recent, last_seen: '2026-11-27T10:00:00Z' }, now).silent).toBe(true);
  });
});
