// Alerts: the stored alerts (GET /api/v1/alerts) with live firings from the stream merged in,
// acknowledge/resolve, each alert's explanation, and the rules editor.
import { useCallback, useEffect, useRef, useState } from 'react';
import { api } from '../api';
import { navigate } from '../router';
import { alertExploreLink, combine, extraBaseline, featureRows, formatNumber, mergeAlert, useAlertStream, visibleAlerts } from '../alerts';
import type { Alert, AlertStatus, Me } from '../types';
import { RulesEditor } from '../components/RulesEditor';
import { WebhooksPanel } from '../components/Webhooks';
import { Empty, ErrorBox, Spinner } from '../components/Status';

const STATUS_FILTERS: { value: AlertStatus | ''; label: string }[] = [
  { value: '', label: 'All' },
  { value: 'open', label: 'Open' },
  { value: 'acknowledged', label: 'Acknowledged' },
  { value: 'resolved', label: 'Resolved' },
];

function when(iso: string | undefined): string {
  return iso ? new Date(iso).toLocaleString() : '—';
}

function Explanation({ alert }: { alert: Alert }) {
  const rows = featureRows(alert);
  const extra = extraBaseline(alert);
  const link = alertExploreLink(alert);
  const over = alert.score != null && alert.threshold != null;
  return (
    <div className="explanation" data-testid="explanation">
      <p>
        {alert.kind === 'rule' ? (
          <>
            Rule <strong>#{alert.rule_id}</strong> counted <strong>{formatNumber(alert.score)}</strong> matching events in its window; it fires {alert.condition ?? 'above'}{' '}
            <strong>{formatNumber(alert.threshold)}</strong>.
          </>
        ) : (
          <>
            Detector <strong>{alert.detector}</strong> scored this window of <strong>{alert.source}</strong> at <strong>{formatNumber(alert.score)}</strong>
            {over && (
              <>
                {' '}
                against a threshold of <strong>{formatNumber(alert.threshold)}</strong>
              </>
            )}
            .
          </>
        )}{' '}
        Window {when(alert.window?.start)} → {alert.window?.end ? new Date(alert.window.end).toLocaleTimeString() : '—'}.
      </p>
      {rows.length > 0 && (
        <table className="grid features">
          <caption>Features of the window beside their baseline (usual level)</caption>
          <thead>
            <tr>
              <th scope="col">Feature</th>
              <th scope="col" className="num">This window</th>
              <th scope="col" className="num">Baseline</th>
              <th scope="col" className="num">Ratio</th>
            </tr>
          </thead>
          <tbody>
            {rows.map((r) => (
              <tr key={r.name} className={r.ratio !== null && (r.ratio >= 3 || r.ratio <= 1 / 3) ? 'moved' : undefined}>
                <th scope="row">{r.name}</th>
                <td className="num">{formatNumber(r.value)}</td>
                <td className="num">{formatNumber(r.baseline)}</td>
                <td className="num">{r.ratio === null ? '—' : `×${formatNumber(r.ratio)}`}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {extra.length > 0 && (
        <p className="muted">
          Also: {extra.map(([k, v]) => `${k} ${formatNumber(v)}`).join(', ')}
        </p>
      )}
      {(alert.samples?.length ?? 0) > 0 && (
        <>
          <h4>Sample events</h4>
          <ul className="samples" aria-label="Sample events">
            {alert.samples!.map((s, i) => (
              <li key={i}>
                {s.severity && <span className={`level level-${s.severity.toLowerCase()}`}>{s.severity}</span>} {s.message}
              </li>
            ))}
          </ul>
        </>
      )}
      {link && (
        <p>
          <a
            href={link}
            onClick={(e) => {
              e.preventDefault();
              navigate(link);
            }}
          >
            Open these events in Explore
          </a>{' '}
          <code className="muted">{alert.search?.q ?? alert.query}</code>
        </p>
      )}
    </div>
  );
}

function AlertItem({ alert, canManage, onChange }: { alert: Alert; canManage: boolean; onChange: (a: Alert) => void }) {
  const [open, setOpen] = useState(false);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const act = async (action: 'ack' | 'resolve') => {
    setBusy(true);
    setError(null);
    try {
      onChange(await api<Alert>(`/api/v1/alerts/${encodeURIComponent(alert.id)}/${action}`, { method: 'POST' }));
    } catch (exc) {
      setError(exc);
    } finally {
      setBusy(false);
    }
  };
  const bodyId = `alert-${alert.id}`;
  return (
    <li className={`alert-item status-${alert.status}`} data-alert={alert.id}>
      <div className="alert-head">
        <button type="button" className="alert-toggle" aria-expanded={open} aria-controls={bodyId} onClick={() => setOpen(!open)}>
          <span className={`badge status ${alert.status}`}>{alert.status}</span>
          <span className="alert-title">{alert.title}</span>
        </button>
        <span className="muted alert-meta">
          {alert.kind === 'rule' ? 'rule' : alert.detector} · {alert.occurrences}× · last <time dateTime={alert.last_fired}>{when(alert.last_fired)}</time>
        </span>
        {canManage && alert.status === 'open' && (
          <button type="button" disabled={busy} onClick={() => act('ack')} aria-label={`Acknowledge alert: ${alert.title}`}>
            Acknowledge
          </button>
        )}
        {canManage && alert.status !== 'resolved' && (
          <button type="button" disabled={busy} onClick={() => act('resolve')} aria-label={`Resolve alert: ${alert.title}`}>
            Resolve
          </button>
        )}
      </div>
      {alert.status !== 'open' && (
        <p className="muted alert-by">
          {alert.status === 'acknowledged' ? `Acknowledged by ${alert.acknowledged_by ?? 'someone'} at ${when(alert.acknowledged_at)}` : `Resolved by ${alert.resolved_by ?? 'someone'} at ${when(alert.resolved_at)}`}
        </p>
      )}
      {error !== null && <ErrorBox error={error} />}
      {open && (
        <div id={bodyId}>
          <Explanation alert={alert} />
        </div>
      )}
    </li>
  );
}

export function AlertsPage({ me }: { me: Me }) {
  const canManage = me.permissions.includes('manage_alerts');
  const [alerts, setAlerts] = useState<Alert[] | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [status, setStatus] = useState<AlertStatus | ''>('');
  const live = useRef<Alert[]>([]); // firings received since the last GET started

  const load = useCallback(() => {
    setError(null);
    live.current = [];
    api<{ alerts: Alert[] }>('/api/v1/alerts', { params: { since: '7d', limit: 200 } })
      .then((r) => setAlerts(combine(r.alerts, live.current)))
      .catch(setError);
  }, []);
  useEffect(load, [load]);

  const onAlert = useCallback((alert: Alert) => {
    live.current = [...live.current, alert];
    setAlerts((list) => (list === null ? list : mergeAlert(list, alert)));
  }, []);
  const stream = useAlertStream(onAlert, load);
  const shown = alerts ? visibleAlerts(alerts, status) : [];
  const openCount = alerts?.filter((a) => a.status === 'open').length ?? 0;

  return (
    <section aria-labelledby="alerts-title" className="page">
      <h1 id="alerts-title">Alerts</h1>
      <div className="live-bar" role="status" aria-live="polite" data-testid="alerts-stream">
        <span className={`dot ${stream.status}`} aria-hidden="true" />
        {stream.status === 'live' && 'Live: new alerts appear at the top'}
        {stream.status === 'connecting' && 'Connecting to live alerts…'}
        {stream.status === 'reconnecting' && stream.message}
        {stream.status === 'error' && <span className="form-error">{stream.message}</span>}
        {stream.dropped > 0 && <span className="notice">{stream.dropped} alerts were dropped from the live feed; reload to see them all.</span>}
      </div>
      <section aria-labelledby="alert-list-title" className="panel">
        <div className="panel-head">
          <h2 id="alert-list-title">
            Alerts of the last 7 days {alerts && <span className="muted">({openCount} open)</span>}
          </h2>
          <div role="group" aria-label="Show alerts by status" className="segmented">
            {STATUS_FILTERS.map((f) => (
              <button key={f.value} type="button" aria-pressed={status === f.value} onClick={() => setStatus(f.value)}>
                {f.label}
              </button>
            ))}
          </div>
        </div>
        {error !== null && <ErrorBox error={error} onRetry={load} />}
        {alerts === null && error === null && <Spinner label="Loading alerts" />}
        {alerts !== null && shown.length === 0 && (
          <Empty>{status ? `No ${status} alerts.` : 'No alerts in the last 7 days. Anomalies and rule firings appear here as they happen.'}</Empty>
        )}
        {shown.length > 0 && (
          <ul className="alert-list" data-testid="alerts" aria-label="Alerts, most recently fired first">
            {shown.map((a) => (
              <AlertItem key={a.id} alert={a} canManage={canManage} onChange={(changed) => setAlerts((list) => list && mergeAlert(list, changed, true))} />
            ))}
          </ul>
        )}
      </section>
      <RulesEditor canEdit={canManage} />
      {me.permissions.includes('manage_settings') && <WebhooksPanel />}
    </section>
  );
}
