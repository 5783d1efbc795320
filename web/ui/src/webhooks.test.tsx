import { describe, expect, it, vi } from 'vitest';
import { fireEvent, render, screen, waitFor, within } from '@testing-library/react';
import { WebhooksPanel, deliveryResult } from './components/Webhooks';
import type { Webhook, WebhookDelivery } from './types';

const hook = (over: Partial<Webhook> = {}): Webhook => ({
  id: 3,
  name: 'pager',
  url: 'https://hooks.example.com/laas',
  enabled: true,
  created_at: '2026-11-27T10:00:00+00:00',
  ...over,
});

const delivery = (over: Partial<WebhookDelivery> = {}): WebhookDelivery => ({
  id: 1,
  alert_id: 'a1b2',
  attempt: 1,
  status_code: 200,
  error: null,
  delivered: true,
  time: '2026-11-27T10:00:05+00:00',
  ...over,
});

const json = (body: unknown, status = 200) => new Response(status === 204 ? null : JSON.stringify(body), { status });

type Call = { url: string; method: string; body: unknown };

/** A fake API over a list of webhooks; records every call. */
function fakeApi(initial: Webhook[], deliveries: WebhookDelivery[] = []) {
  let hooks = [...initial];
  const calls: Call[] = [];
  globalThis.fetch = vi.fn(async (input: RequestInfo | URL, init?: RequestInit) => {
    const url = String(input);
    const method = init?.method ?? 'GET';
    const body = init?.body ? JSON.parse(String(init.body)) : undefined;
    calls.push({ url, method, body });
    if (url === '/api/v1/webhooks' && method === 'GET') return json({ webhooks: hooks });
    if (url === '/api/v1/webhooks' && method === 'POST') {
      if (!String(body.url).startsWith('http')) return json({ error: 'invalid_input', detail: 'url must be an http:// or https:// URL', field: 'url' }, 422);
      const made = hook({ id: 9, name: body.name, url: body.url });
      hooks = [...hooks, made];
      return json({ ...made, secret: 'f00dfeed'.repeat(8) }, 201);
    }
    const one = /^\/api\/v1\/webhooks\/(\d+)(\/deliveries)?$/.exec(url);
    if (one && one[2]) return json({ deliveries });
    if (one && method === 'DELETE') {
      hooks = hooks.filter((h) => h.id !== Number(one[1]));
      return json(null, 204);
    }
    if (one && method === 'PATCH') {
      hooks = hooks.map((h) => (h.id === Number(one[1]) ? { ...h, ...body } : h));
      return json(hooks.find((h) => h.id === Number(one[1])));
    }
    return json({ error: 'not_found', detail: 'no such route' }, 404);
  }) as typeof fetch;
  return calls;
}

describe('webhook delivery results', () => {
  it('says in words what an attempt came to', () => {
    expect(deliveryResult(delivery())).toBe('delivered (HTTP 200)');
    expect(deliveryResult(delivery({ delivered: false, status_code: 503 }))).toBe('failed: HTTP 503');
    expect(deliveryResult(delivery({ delivered: false, status_code: null, error: 'ConnectError()' }))).toBe('failed: ConnectError()');
    expect(deliveryResult(delivery({ delivered: false, status_code: null }))).toBe('failed: no answer');
  });
});

describe('Webhooks panel', () => {
  it('shows a loading state, then says when there are none', async () => {
    fakeApi([]);
    render(<WebhooksPanel />);
    expect(screen.getByRole('status').textContent).toContain('Loading webhooks');
    await screen.findByText(/No webhooks yet/);
  });

  it('creates a webhook and shows its secret only until Done', async () => {
    const calls = fakeApi([]);
    render(<WebhooksPanel />);
    await screen.findByText(/No webhooks yet/);
    fireEvent.change(screen.getByLabelText('Webhook name'), { target: { value: ' on-call ' } });
    fireEvent.change(screen.getByLabelText('URL'), { target: { value: 'https://hooks.example.com/x' } });
    fireEvent.click(screen.getByRole('button', { name: 'Create webhook' }));
    const created = await screen.findByTestId('new-webhook');
    expect(within(created).getByText('f00dfeed'.repeat(8))).toBeTruthy();
    expect(calls.find((c) => c.method === 'POST')!.body).toEqual({ name: 'on-call', url: 'https://hooks.example.com/x' });
    await screen.findByRole('cell', { name: 'https://hooks.example.com/x' });
    fireEvent.click(within(created).getByRole('button', { name: 'Done' }));
    expect(screen.queryByText('f00dfeed'.repeat(8))).toBeNull();
    expect(screen.queryByTestId('new-webhook')).toBeNull();
  });

  it('shows the API validation error beside the URL field', async () => {
    fakeApi([]);
    render(<WebhooksPanel />);
    await screen.findByText(/No webhooks yet/);
    fireEvent.change(screen.getByLabelText('Webhook name'), { target: { value: 'bad' } });
    fireEvent.change(screen.getByLabelText('URL'), { target: { value: 'ftp://x' } });
    fireEvent.submit(screen.getByRole('form', { name: 'New webhook' }));
    expect((await screen.findByRole('alert')).textContent).toBe('The webhook was not created: url must be an http:// or https:// URL');
    expect(screen.getByLabelText('URL').getAttribute('aria-invalid')).toBe('true');
    expect(screen.queryByTestId('new-webhook')).toBeNull();
  });

  it('opens the delivery log of a webhook with each attempt in words', async () => {
    fakeApi([hook()], [delivery({ id: 2, alert_id: 'zz', attempt: 2 }), delivery({ id: 1, alert_id: 'zz', delivered: false, status_code: 503 })]);
    render(<WebhooksPanel />);
    const toggle = await screen.findByRole('button', { name: 'Delivery log of pager' });
    expect(toggle.getAttribute('aria-expanded')).toBe('false');
    fireEvent.click(toggle);
    const log = await screen.findByTestId('deliveries');
    await within(log).findByText('delivered (HTTP 200)');
    expect(within(log).getByText('failed: HTTP 503')).toBeTruthy();
    expect(toggle.getAttribute('aria-expanded')).toBe('true');
    expect(toggle.getAttribute('aria-controls')).toBe(log.id);
  });

  it('says when a webhook has no deliveries yet', async () => {
    fakeApi([hook()]);
    render(<WebhooksPanel />);
    fireEvent.click(await screen.findByRole('button', { name: 'Delivery log of pager' }));
    await screen.findByText(/No deliveries yet/);
  });

  it('disables and deletes a webhook (after confirmation)', async () => {
    const calls = fakeApi([hook()]);
    render(<WebhooksPanel />);
    fireEvent.click(await screen.findByRole('button', { name: 'Disable webhook pager' }));
    await screen.findByRole('button', { name: 'Enable webhook pager' });
    expect(calls.find((c) => c.method === 'PATCH')!.body).toEqual({ enabled: false });
    const confirm = vi.spyOn(window, 'confirm').mockReturnValueOnce(false).mockReturnValueOnce(true);
    fireEvent.click(screen.getByRole('button', { name: 'Delete webhook pager' }));
    expect(calls.some((c) => c.method === 'DELETE')).toBe(false);
    fireEvent.click(screen.getByRole('button', { name: 'Delete webhook pager' }));
    await screen.findByText(/No webhooks yet/);
    expect(calls.filter((c) => c.method === 'DELETE').map((c) => c.url)).toEqual(['/api/v1/webhooks/3']);
    confirm.mockRestore();
  });

  it('says so in words when the API fails', async () => {
    globalThis.fetch = vi.fn(async () => json({ error: 'forbidden', detail: 'viewer may not manage_settings' }, 403)) as typeof fetch;
    render(<WebhooksPanel />);
    expect((await screen.findByRole('alert')).textContent).toContain('Not allowed: viewer may not manage_settings.');
    await waitFor(() => expect(screen.getByRole('button', { name: 'Retry' })).toBeTruthy());
  });
});
