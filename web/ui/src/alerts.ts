// Alerts page logic: merging the stored list with live firings, the stream, explanations and
// the rule form. Pure functions are tested in alerts.test.ts.
import { useEffect, useState } from 'react';
import { session } from './api';
import { DEFAULT_STATE, formatState } from './state';
import type { Alert, AlertRule, AlertStatus } from './types';

/** A live firing merged into the list as the alert store merges it (app/pipeline/alerting.py
 * merge_alert): new evidence wins, an acknowledgement is kept, a resolved alert firing again is
 * open again; a copy older than the one shown (fewer occurrences) is ignored. With `local` (the
 * API's answer to this client's acknowledge/resolve) the incoming alert replaces the old. */
export function mergeAlert(list: Alert[], incoming: Alert, local = false): Alert[] {
  const at = list.findIndex((a) => a.id === incoming.id);
  if (at < 0) return sortAlerts([incoming, ...list]);
  const old = list[at];
  let merged: Alert;
  if (local) merged = { ...old, ...incoming };
  else if (old.occurrences > incoming.occurrences) return list;
  else merged = { ...old, ...incoming, status: old.status === 'resolved' ? incoming.status : old.status };
  return sortAlerts(list.map((a, i) => (i === at ? merged : a)));
}

/** The stored list (GET) with the live firings received meanwhile merged on top. */
export function combine(stored: Alert[], live: Alert[]): Alert[] {
  return live.reduce((list, alert) => mergeAlert(list, alert), sortAlerts(stored));
}

/** Most recently fired first (the API's order). */
export function sortAlerts(list: Alert[]): Alert[] {
  return [...list].sort((a, b) => Date.parse(b.last_fired) - Date.parse(a.last_fired));
}

export function visibleAlerts(list: Alert[], status: AlertStatus | ''): Alert[] {
  return status ? list.filter((a) => a.status === status) : list;
}

/** Explore showing the alert's events: its query over its window (rounded out to seconds). */
export function alertExploreLink(alert: Alert): string | null {
  const q = alert.search?.q ?? alert.query;
  if (!q) return null;
  const since = alert.search?.since ?? alert.window?.start;
  const until = alert.search?.until ?? alert.window?.end;
  const sinceMs = since ? Date.parse(since) : NaN;
  const untilMs = until ? Date.parse(until) : NaN;
  if (Number.isNaN(sinceMs) || Number.isNaN(untilMs)) return `/explore${formatState({ ...DEFAULT_STATE, q, since: '24h' })}`;
  const s = new Date(Math.floor(sinceMs / 1000) * 1000).toISOString();
  const u = new Date(Math.ceil(untilMs / 1000) * 1000).toISOString();
  return `/explore${formatState({ ...DEFAULT_STATE, q, since: s, until: u })}`;
}

export interface FeatureRow {
  name: string;
  value: number | null;
  baseline: number | null;
  /** value / baseline when both are known and the baseline is not 0. */
  ratio: number | null;
}

/** The baseline entry of a feature: the same name, or the detector's `mean_<feature>`. */
function baselineKey(baseline: Record<string, number | null>, feature: string): string | null {
  if (feature in baseline) return feature;
  return `mean_${feature}` in baseline ? `mean_${feature}` : null;
}

/** Features beside their baselines; features that moved most first, then the rest by name. */
export function featureRows(alert: Alert): FeatureRow[] {
  const features = alert.features ?? {};
  const baseline = alert.baseline ?? {};
  const rows = Object.keys(features).map((name) => {
    const value = features[name] ?? null;
    const key = baselineKey(baseline, name);
    const base = key === null ? null : (baseline[key] ?? null);
    const ratio = value !== null && base !== null && base !== 0 ? value / base : null;
    return { name, value, baseline: base, ratio };
  });
  const moved = (r: FeatureRow) => (r.ratio === null ? (r.baseline !== null ? 0.5 : 0) : Math.abs(Math.log(Math.max(r.ratio, 1e-9))));
  return rows.sort((a, b) => moved(b) - moved(a) || a.name.localeCompare(b.name));
}

/** Baseline entries not shown beside a feature (e.g. `std_count`, `z_needed`). */
export function extraBaseline(alert: Alert): [string, number | null][] {
  const features = alert.features ?? {};
  const baseline = alert.baseline ?? {};
  const used = new Set(Object.keys(features).map((f) => baselineKey(baseline, f)));
  return Object.entries(baseline).filter(([k]) => !used.has(k));
}

export function formatNumber(value: number | null | undefined): string {
  if (value === null || value === undefined || Number.isNaN(value)) return '—';
  if (Number.isInteger(value)) return value.toLocaleString();
  return Math.abs(value) >= 100 ? value.toFixed(0) : value.toPrecision(3);
}

// --- rule form -------------------------------------------------------------------------------

export interface RuleDraft {
  name: string;
  query: string;
  window_seconds: string;
  condition: 'above' | 'below';
  threshold: string;
  cooldown_seconds: string;
  enabled: boolean;
}

export const EMPTY_RULE: RuleDraft = {
  name: '',
  query: '',
  window_seconds: '60',
  condition: 'above',
  threshold: '',
  cooldown_seconds: '300',
  enabled: true,
};

export function draftOf(rule: AlertRule): RuleDraft {
  return {
    name: rule.name,
    query: rule.query,
    window_seconds: String(rule.window_seconds),
    condition: rule.condition,
    threshold: String(rule.threshold),
    cooldown_seconds: String(rule.cooldown_seconds),
    enabled: rule.enabled,
  };
}

/** The request body of a draft, or the field errors a person must fix first. Numbers that
 * are not whole are sent as typed so the API's own message explains the range. */
export function ruleBody(draft: RuleDraft): { body: Record<string, unknown> } | { errors: Record<string, string> } {
  const errors: Record<string, string> = {};
  if (!draft.name.trim()) errors.name = 'Give the rule a name.';
  if (!draft.query.trim()) errors.query = 'Enter the query whose matching events are counted.';
  const num = (field: keyof RuleDraft, label: string) => {
    const text = String(draft[field]).trim();
    if (!/^-?\d+$/.test(text)) {
      errors[field] = `${label} must be a whole number.`;
      return 0;
    }
    return Number(text);
  };
  const body = {
    name: draft.name.trim(),
    query: draft.query.trim(),
    window_seconds: num('window_seconds', 'Window'),
    condition: draft.condition,
    threshold: num('threshold', 'Threshold'),
    cooldown_seconds: num('cooldown_seconds', 'Cooldown'),
    enabled: draft.enabled,
  };
  return Object.keys(errors).length ? { errors } : { body };
}

export function describeRule(rule: Pick<AlertRule, 'condition' | 'threshold' | 'window_seconds'>): string {
  return `${rule.condition === 'above' ? 'more than' : 'fewer than'} ${rule.threshold} events in ${rule.window_seconds} s`;
}

// --- the live stream -------------------------------------------------------------------------

export type StreamMessage =
  | { type: 'alert'; alert: Alert }
  | { type: 'ready' }
  | { type: 'notice'; dropped: number; detail: string }
  | { type: 'heartbeat'; time: string }
  | { type: 'error'; error?: string; detail: string };

export interface StreamState {
  status: 'connecting' | 'live' | 'reconnecting' | 'error';
  message: string;
  dropped: number;
}

export function streamUrl(token: string, origin = window.location): string {
  const scheme = origin.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${origin.host}/api/v1/alerts/stream?${new URLSearchParams({ token })}`;
}

/** Follow `/api/v1/alerts/stream`; every alert frame goes to `onAlert`. Reconnects with backoff
 * (alerts fired while disconnected come back with the next `GET /api/v1/alerts`: `onReconnect`). */
export function useAlertStream(onAlert: (alert: Alert) => void, onReconnect: () => void): StreamState {
  const [state, setState] = useState<StreamState>({ status: 'connecting', message: '', dropped: 0 });
  useEffect(() => {
    let socket: WebSocket | null = null;
    let stopped = false;
    let attempt = 0;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const connect = async () => {
      if (!session.access) await session.refresh();
      if (stopped) return;
      socket = new WebSocket(streamUrl(session.access ?? ''));
      socket.onmessage = (e) => {
        const message = JSON.parse(e.data) as StreamMessage;
        if (message.type === 'alert') onAlert(message.alert);
        else if (message.type === 'ready') {
          if (attempt > 0) onReconnect();
          attempt = 0;
          setState((s) => ({ ...s, status: 'live', message: '' }));
        } else if (message.type === 'notice') setState((s) => ({ ...s, dropped: s.dropped + message.dropped }));
        else if (message.type === 'error') setState((s) => ({ ...s, status: 'error', message: message.detail }));
      };
      socket.onclose = async (e) => {
        if (stopped) return;
        if (e.code === 1008 || e.code === 4401) await session.refresh(); // expired: refresh
        attempt += 1;
        const delay = Math.min(10_000, 500 * 2 ** attempt);
        setState((s) => ({ ...s, status: 'reconnecting', message: `Live alerts disconnected; reconnecting in ${Math.round(delay / 1000)} s` }));
        timer = setTimeout(connect, delay);
      };
    };
    connect();
    return () => {
      stopped = true;
      clearTimeout(timer);
      socket?.close(1000);
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, []);
  return state;
}
