// The alert rules editor: list, create, edit and delete rules (admins and members); viewers
// read only. Validation errors from the API are shown in words beside the form.
import { useState, type FormEvent, type ReactElement } from 'react';
import { api, ApiError } from '../api';
import { useApiList } from '../useApiList';
import { describeRule, draftOf, EMPTY_RULE, ruleBody, type RuleDraft } from '../alerts';
import type { AlertRule } from '../types';
import { Empty, ErrorBox, Spinner } from './Status';

function RuleForm({ initial, editing, onSaved, onCancel }: { initial: RuleDraft; editing: AlertRule | null; onSaved: () => void; onCancel?: () => void }) {
  const [draft, setDraft] = useState(initial);
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [failure, setFailure] = useState('');
  const [busy, setBusy] = useState(false);
  const prefix = editing ? `rule-${editing.id}` : 'rule-new';
  const set = (patch: Partial<RuleDraft>) => setDraft((d) => ({ ...d, ...patch }));

  async function submit(e: FormEvent) {
    e.preventDefault();
    setFailure('');
    const checked = ruleBody(draft);
    if ('errors' in checked) return setErrors(checked.errors);
    setErrors({});
    setBusy(true);
    try {
      if (editing) await api(`/api/v1/alert-rules/${editing.id}`, { method: 'PATCH', body: checked.body });
      else await api('/api/v1/alert-rules', { method: 'POST', body: checked.body });
      if (!editing) setDraft(EMPTY_RULE);
      onSaved();
    } catch (exc) {
      const field = exc instanceof ApiError && typeof exc.body.field === 'string' ? exc.body.field : '';
      const message = exc instanceof Error ? exc.message : String(exc);
      if (field && field in EMPTY_RULE) setErrors({ [field]: message });
      setFailure(editing ? `The rule was not saved: ${message}` : `The rule was not created: ${message}`);
    } finally {
      setBusy(false);
    }
  }

  const field = (name: keyof RuleDraft, label: string, input: ReactElement) => (
    <div className={`field${errors[name] ? ' invalid' : ''}`}>
      <label htmlFor={`${prefix}-${name}`}>{label}</label>
      {input}
      {errors[name] && (
        <span className="form-error" id={`${prefix}-${name}-error`}>
          {errors[name]}
        </span>
      )}
    </div>
  );
  const aria = (name: keyof RuleDraft) => ({
    id: `${prefix}-${name}`,
    'aria-invalid': errors[name] ? true : undefined,
    'aria-describedby': errors[name] ? `${prefix}-${name}-error` : undefined,
  });

  return (
    <form className="rule-form" onSubmit={submit} aria-label={editing ? `Edit rule ${editing.name}` : 'New alert rule'} onKeyDown={(e) => e.key === 'Escape' && onCancel?.()}>
      {field('name', 'Rule name', <input {...aria('name')} value={draft.name} maxLength={200} onChange={(e) => set({ name: e.target.value })} />)}
      {field('query', 'Query (events counted)', <input {...aria('query')} className="mono" value={draft.query} placeholder='level:error AND service:"checkout"' onChange={(e) => set({ query: e.target.value })} />)}
      {field(
        'condition',
        'Fires when the count is',
        <select {...aria('condition')} value={draft.condition} onChange={(e) => set({ condition: e.target.value as RuleDraft['condition'] })}>
          <option value="above">above</option>
          <option value="below">below</option>
        </select>,
      )}
      {field('threshold', 'Threshold (events)', <input {...aria('threshold')} inputMode="numeric" value={draft.threshold} onChange={(e) => set({ threshold: e.target.value })} />)}
      {field('window_seconds', 'Window (seconds)', <input {...aria('window_seconds')} inputMode="numeric" value={draft.window_seconds} onChange={(e) => set({ window_seconds: e.target.value })} />)}
      {field('cooldown_seconds', 'Cooldown (seconds)', <input {...aria('cooldown_seconds')} inputMode="numeric" value={draft.cooldown_seconds} onChange={(e) => set({ cooldown_seconds: e.target.value })} />)}
      <label className="toggle">
        <input type="checkbox" checked={draft.enabled} onChange={(e) => set({ enabled: e.target.checked })} /> Enabled
      </label>
      <div className="actions">
        <button type="submit" className="primary" disabled={busy}>
          {editing ? 'Save rule' : 'Create rule'}
        </button>
        {onCancel && (
          <button type="button" onClick={onCancel}>
            Cancel
          </button>
        )}
      </div>
      {failure && (
        <p className="form-error" role="alert">
          {failure}
        </p>
      )}
    </form>
  );
}

export function RulesEditor({ canEdit }: { canEdit: boolean }) {
  const { items: rules, error, setError, load } = useApiList<AlertRule>('/api/v1/alert-rules', 'rules');
  const [editing, setEditing] = useState<number | null>(null);

  async function remove(rule: AlertRule) {
    if (!window.confirm(`Delete the alert rule "${rule.name}"? It stops firing; its past alerts stay.`)) return;
    try {
      await api(`/api/v1/alert-rules/${rule.id}`, { method: 'DELETE' });
      load();
    } catch (exc) {
      setError(exc);
    }
  }

  return (
    <section aria-labelledby="rules-title" className="panel" data-testid="rules">
      <h2 id="rules-title">Alert rules</h2>
      <p className="muted">
        A rule counts the events matching its query per window, in the stream, and fires when the count crosses its threshold.
        {!canEdit && <span data-testid="rules-readonly"> You can read the rules; admins and members change them.</span>}
      </p>
      {canEdit && <RuleForm initial={EMPTY_RULE} editing={null} onSaved={load} />}
      {error !== null && <ErrorBox error={error} onRetry={load} />}
      {rules === null && error === null && <Spinner label="Loading rules" />}
      {rules !== null && rules.length === 0 && <Empty>No alert rules yet.{canEdit ? ' Create one above.' : ''}</Empty>}
      {rules !== null && rules.length > 0 && (
        <table className="grid">
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Query</th>
              <th scope="col">Fires on</th>
              <th scope="col">Cooldown</th>
              <th scope="col">State</th>
              {canEdit && (
                <th scope="col">
                  <span className="sr-only">Actions</span>
                </th>
              )}
            </tr>
          </thead>
          <tbody>
            {rules.map((r) =>
              editing === r.id ? (
                <tr key={r.id} data-rule={r.name}>
                  <td colSpan={6}>
                    <RuleForm
                      initial={draftOf(r)}
                      editing={r}
                      onSaved={() => {
                        setEditing(null);
                        load();
                      }}
                      onCancel={() => setEditing(null)}
                    />
                  </td>
                </tr>
              ) : (
                <tr key={r.id} data-rule={r.name}>
                  <td>{r.name}</td>
                  <td>
                    <code>{r.query}</code>
                  </td>
                  <td>{describeRule(r)}</td>
                  <td>{r.cooldown_seconds} s</td>
                  <td>{r.enabled ? 'enabled' : 'disabled'}</td>
                  {canEdit && (
                    <td className="actions">
                      <button type="button" onClick={() => setEditing(r.id)} aria-label={`Edit rule ${r.name}`}>
                        Edit
                      </button>
                      <button type="button" className="danger" onClick={() => remove(r)} aria-label={`Delete rule ${r.name}`}>
                        Delete
                      </button>
                    </td>
                  )}
                </tr>
              ),
            )}
          </tbody>
        </table>
      )}
    </section>
  );
}
