// Shapes of the API's answers (web/*.py).

export interface LogHit {
  id: string;
  time: string;
  observed_time?: string | null;
  level: string | null;
  service: string | null;
  host: string | null;
  message: string | null;
  template_id?: string | null;
  trace_id?: string | null;
  span_id?: string | null;
  attributes: Record<string, string>;
  highlight?: { message?: string[] };
}

export interface SearchResult {
  hits: LogHit[];
  total: { value: number; relation: 'eq' | 'gte' };
  next_cursor: string | null;
  partial: boolean;
  took_ms: number;
  since: string;
  until: string;
}

export interface HistogramBucket {
  time: string;
  count: number;
  levels: Record<string, number>;
}

export interface HistogramResult {
  interval_seconds: number;
  since: string;
  until: string;
  total: number;
  buckets: HistogramBucket[];
}

export interface FieldFacet {
  field: string;
  values: { value: string; count: number }[];
  other: number;
}

export interface ContextResult {
  event: LogHit;
  before: LogHit[];
  after: LogHit[];
}

export interface Me {
  kind: string;
  user: { id: number; email: string } | null;
  tenant: { id: number; slug: string; name: string };
  role: string | null;
  permissions: string[];
  tenants: { slug: string; name: string; role: string }[];
}

export interface ApiKey {
  id: number;
  name: string;
  scope: string;
  prefix: string;
  created_by: number | null;
  created_at: string;
  last_used_at: string | null;
  revoked_at: string | null;
  active: boolean;
  key?: string;
}

export interface Member {
  id: number;
  email: string;
  role: string;
  active: boolean;
  created_at: string;
  last_login_at: string | null;
}

export interface Source {
  service: string;
  host: string;
  count: number;
  bytes?: number;
  severity?: Record<string, number>;
  first_seen?: string;
  last_seen?: string;
  window_seconds?: number;
  windows?: { start: string; count: number; bytes?: number; severity?: Record<string, number> }[];
}

/** `GET /api/v1/patterns` (web/templates.py). */
export interface Pattern {
  template_id: string;
  /** every id counted in this row: the template's and the ids it left as it widened or merged */
  template_ids: string[];
  template: string | null;
  count: number;
  new: boolean;
  first_seen: string | null;
  last_seen: string | null;
  first_seen_in_range: string | null;
  last_seen_in_range: string | null;
  trend: number[];
  samples: LogHit[];
  query: string;
}

export interface PatternsResult {
  since: string;
  until: string;
  interval_seconds: number;
  trend_start: string;
  total: number;
  patterns: Pattern[];
}

export type AlertStatus = 'open' | 'acknowledged' | 'resolved';

/** An alert as the detect stage writes it (app/pipeline/alerting.py) plus the API's status changes. */
export interface Alert {
  id: string;
  kind: 'anomaly' | 'rule';
  detector: string | null;
  rule_id: number | null;
  source: string | null;
  title: string;
  status: AlertStatus;
  occurrences: number;
  first_fired: string;
  last_fired: string;
  window?: { start: string; end: string };
  score?: number | null;
  threshold?: number | null;
  condition?: string;
  features?: Record<string, number | null>;
  baseline?: Record<string, number | null>;
  samples?: { message: string; severity?: string; template_id?: string; service?: string; host?: string }[];
  query?: string;
  search?: { q: string; since: string; until: string };
  acknowledged_at?: string;
  acknowledged_by?: string;
  resolved_at?: string;
  resolved_by?: string;
}

/** `/api/v1/alert-rules` (web/alert_rules.py). */
export interface AlertRule {
  id: number;
  name: string;
  query: string;
  window_seconds: number;
  condition: 'above' | 'below';
  threshold: number;
  cooldown_seconds: number;
  enabled: boolean;
  created_at: string;
  updated_at: string;
}

/** `/api/v1/webhooks` (web/alert_rules.py); `secret` only in the answer to its creation. */
export interface Webhook {
  id: number;
  name: string;
  url: string;
  enabled: boolean;
  created_at: string;
  secret?: string;
}

/** One delivery attempt of an alert to a webhook (`/api/v1/webhooks/{id}/deliveries`). */
export interface WebhookDelivery {
  id: number;
  alert_id: string;
  attempt: number;
  status_code: number | null;
  error: string | null;
  delivered: boolean;
  time: string;
}
