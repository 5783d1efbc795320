// Webhooks (admins): where the tenant's alerts are POSTed. List, create (the signing secret is
// shown once), enable/disable, delete, and each webhook's delivery log.
import { Fragment, useState, type FormEvent } from 'react';
import { api, ApiError } from '../api';
import { useApiList } from '../useApiList';
import type { Webhook, WebhookDelivery } from '../types';
import { CopyButton } from './CopyButton';
import { Empty, ErrorBox, Spinner } from './Status';

const when = (iso: string) => new Date(iso).toLocaleString();

/** What one delivery attempt came to, in words. */
export function deliveryResult(d: WebhookDelivery): string {
  if (d.delivered) return d.status_code === null ? 'delivered' : `delivered (HTTP ${d.status_code})`;
  if (d.status_code !== null) return `failed: HTTP ${d.status_code}${d.error ? ` (${d.error})` : ''}`;
  return `failed: ${d.error || 'no answer'}`;
}

function DeliveryLog({ hook, id }: { hook: Webhook; id: string }) {
  const { items: deliveries, error, loading, load } = useApiList<WebhookDelivery>(
    `/api/v1/webhooks/${hook.id}/deliveries`, 'deliveries');

  return (
    <div id={id} className="delivery-log" data-testid="deliveries">
      <div className="panel-head">
        <h3>Delivery log of {hook.name}</h3>
        <button type="button" onClick={load} disabled={loading} aria-label={`Refresh the delivery log of ${hook.name}`}>
          {loading ? 'Refreshing…' : 'Refresh'}
        </button>
      </div>
      {error !== null && <ErrorBox error={error} onRetry={load} />}
      {deliveries === null && error === null && <Spinner label="Loading deliveries" />}
      {deliveries !== null && deliveries.length === 0 && <Empty>No deliveries yet. The first firing of each alert is sent here.</Empty>}
      {deliveries !== null && deliveries.length > 0 && (
        <table className="grid">
          <caption className="sr-only">Latest delivery attempts of {hook.name}, newest first</caption>
          <thead>
            <tr>
              <th scope="col">Time</th>
              <th scope="col">Alert</th>
              <th scope="col">Attempt</th>
              <th scope="col">Result</th>
            </tr>
          </thead>
          <tbody>
            {deliveries.map((d) => (
              <tr key={d.id} data-delivery={d.alert_id} className={d.delivered ? 'delivered' : 'failed'}>
                <td>{when(d.time)}</td>
                <td>
                  <code>{d.alert_id}</code>
                </td>
                <td>{d.attempt}</td>
                <td>{deliveryResult(d)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </div>
  );
}

export function WebhooksPanel() {
  const { items: hooks, error, setError, load } = useApiList<Webhook>('/api/v1/webhooks', 'webhooks');
  const [name, setName] = useState('');
  const [url, setUrl] = useState('');
  const [fieldError, setFieldError] = useState<{ field: string; message: string } | null>(null);
  const [failure, setFailure] = useState('');
  const [busy, setBusy] = useState(false);
  const [created, setCreated] = useState<Webhook | null>(null);
  const [open, setOpen] = useState<number | null>(null);


  async function create(e: FormEvent) {
    e.preventDefault();
    setBusy(true);
    setFailure('');
    setFieldError(null);
    try {
      setCreated(await api<Webhook>('/api/v1/webhooks', { method: 'POST', body: { name: name.trim(), url: url.trim() } }));
      setName('');
      setUrl('');
      load();
    } catch (exc) {
      const message = exc instanceof Error ? exc.message : String(exc);
      const field = exc instanceof ApiError && typeof exc.body.field === 'string' ? exc.body.field : '';
      if (field === 'name' || field === 'url') setFieldError({ field, message });
      setFailure(`The webhook was not created: ${message}`);
    } finally {
      setBusy(false);
    }
  }

  async function change(hook: Webhook, request: Promise<unknown>) {
    setError(null);
    try {
      await request;
      if (open === hook.id) setOpen(null);
      load();
    } catch (exc) {
      setError(exc);
    }
  }

  const invalid = (field: string) => ({
    'aria-invalid': fieldError?.field === field ? true : undefined,
    'aria-describedby': fieldError?.field === field ? `hook-${field}-error` : undefined,
  });
  const fieldMessage = (field: string) =>
    fieldError?.field === field && (
      <span className="form-error" id={`hook-${field}-error`}>
        {fieldError.message}
      </span>
    );

  return (
    <section aria-labelledby="hooks-title" className="panel" data-testid="webhooks">
      <h2 id="hooks-title">Webhooks</h2>
      <p className="muted">
        The first firing of every alert is POSTed as JSON to each enabled webhook, signed as Standard Webhooks sign: <code>webhook-id</code>,
        <code>webhook-timestamp</code> and <code>webhook-signature</code> (HMAC-SHA256 of id, timestamp and body with the webhook’s secret; refuse
        timestamps older than five minutes). Only public addresses are reached. Failures are retried; every attempt is in the delivery log.
      </p>
      <form className="inline-form" onSubmit={create} aria-label="New webhook">
        <label htmlFor="hook-name">Webhook name</label>
        <input id="hook-name" required maxLength={200} value={name} onChange={(e) => setName(e.target.value)} placeholder="e.g. on-call pager" {...invalid('name')} />
        {fieldMessage('name')}
        <label htmlFor="hook-url">URL</label>
        <input id="hook-url" type="url" required maxLength={2000} className="mono" value={url} onChange={(e) => setUrl(e.target.value)} placeholder="https://hooks.example.com/laas" {...invalid('url')} />
        {fieldMessage('url')}
        <button className="primary" type="submit" disabled={busy}>
          {busy ? 'Creating…' : 'Create webhook'}
        </button>
      </form>
      {failure && (
        <p className="form-error" role="alert">
          {failure}
        </p>
      )}
      {created?.secret && (
        <div className="created" role="status" data-testid="new-webhook">
          <p>
            <strong>Copy the signing secret of “{created.name}” now:</strong> it is shown only this once.
          </p>
          <code className="secret">{created.secret}</code>
          <CopyButton text={created.secret} />
          <button type="button" onClick={() => setCreated(null)}>
            Done
          </button>
        </div>
      )}
      {error !== null && <ErrorBox error={error} onRetry={load} />}
      {hooks === null && error === null && <Spinner label="Loading webhooks" />}
      {hooks !== null && hooks.length === 0 && <Empty>No webhooks yet. Create one above to have alerts sent to it.</Empty>}
      {hooks !== null && hooks.length > 0 && (
        <table className="grid">
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">URL</th>
              <th scope="col">State</th>
              <th scope="col">Created</th>
              <th scope="col">
                <span className="sr-only">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {hooks.map((h) => (
              <Fragment key={h.id}>
                <tr data-webhook={h.name}>
                  <td>{h.name}</td>
                  <td>
                    <code>{h.url}</code>
                  </td>
                  <td>{h.enabled ? 'enabled' : 'disabled'}</td>
                  <td>{when(h.created_at)}</td>
                  <td className="actions">
                    <button type="button" aria-expanded={open === h.id} aria-controls={`hook-log-${h.id}`} aria-label={`Delivery log of ${h.name}`} onClick={() => setOpen(open === h.id ? null : h.id)}>
                      Deliveries
                    </button>
                    <button type="button" aria-label={`${h.enabled ? 'Disable' : 'Enable'} webhook ${h.name}`} onClick={() => change(h, api(`/api/v1/webhooks/${h.id}`, { method: 'PATCH', body: { enabled: !h.enabled } }))}>
                      {h.enabled ? 'Disable' : 'Enable'}
                    </button>
                    <button
                      type="button"
                      className="danger"
                      aria-label={`Delete webhook ${h.name}`}
                      onClick={() => {
                        if (window.confirm(`Delete the webhook "${h.name}"? Alerts stop being sent to ${h.url}.`)) {
                          change(h, api(`/api/v1/webhooks/${h.id}`, { method: 'DELETE' }));
                        }
                      }}
                    >
                      Delete
                    </button>
                  </td>
                </tr>
                {open === h.id && (
                  <tr>
                    <td colSpan={5}>
                      <DeliveryLog hook={h} id={`hook-log-${h.id}`} />
                    </td>
                  </tr>
                )}
              </Fragment>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}
