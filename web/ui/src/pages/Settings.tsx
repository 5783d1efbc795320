// Settings: API keys (create — shown once —, list, revoke) and, for admins, users and roles.
import { useState, type FormEvent } from 'react';
import { api } from '../api';
import { useApiList } from '../useApiList';
import type { ApiKey, Me, Member } from '../types';
import { Empty, ErrorBox, Spinner } from '../components/Status';
import { CopyButton } from '../components/CopyButton';

function date(iso: string | null): string {
  return iso ? new Date(iso).toLocaleString() : '—';
}

function ApiKeys({ me }: { me: Me }) {
  const { items: keys, error, setError, load } = useApiList<ApiKey>('/api/v1/apikeys', 'keys');
  const [name, setName] = useState('');
  const [scope, setScope] = useState('read');
  const [created, setCreated] = useState<ApiKey | null>(null);
  const [busy, setBusy] = useState(false);
  const admin = me.permissions.includes('manage_keys');


  async function create(e: FormEvent) {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      setCreated(await api<ApiKey>('/api/v1/apikeys', { method: 'POST', body: { name: name.trim(), scope } }));
      setName('');
      load();
    } catch (exc) {
      setError(exc);
    } finally {
      setBusy(false);
    }
  }

  async function revoke(key: ApiKey) {
    if (!window.confirm(`Revoke the key "${key.name}" (${key.prefix}…)? Clients using it will be refused.`)) return;
    try {
      await api(`/api/v1/apikeys/${key.id}`, { method: 'DELETE' });
      load();
    } catch (exc) {
      setError(exc);
    }
  }

  return (
    <section aria-labelledby="keys-title" className="panel" data-testid="apikeys">
      <h2 id="keys-title">API keys</h2>
      <p className="muted">{admin ? 'Every key of this tenant.' : 'The keys you created.'} Ingest keys send logs; read keys search and tail.</p>
      <form className="inline-form" onSubmit={create}>
        <label htmlFor="key-name">Name</label>
        <input id="key-name" required maxLength={100} value={name} onChange={(e) => setName(e.target.value)} placeholder="e.g. api-servers" />
        <label htmlFor="key-scope">Scope</label>
        <select id="key-scope" value={scope} onChange={(e) => setScope(e.target.value)}>
          <option value="ingest">ingest</option>
          <option value="read">read</option>
          {admin && <option value="admin">admin</option>}
        </select>
        <button className="primary" type="submit" disabled={busy}>
          Create key
        </button>
      </form>
      {created?.key && (
        <div className="created" role="status" data-testid="new-key">
          <p>
            <strong>Copy the key “{created.name}” now:</strong> it is shown only this once.
          </p>
          <code className="secret">{created.key}</code>
          <CopyButton text={created.key} />
          <button type="button" onClick={() => setCreated(null)}>
            Done
          </button>
        </div>
      )}
      {error !== null && <ErrorBox error={error} />}
      {keys === null && error === null && <Spinner label="Loading keys" />}
      {keys !== null && keys.length === 0 && <Empty>No API keys yet.</Empty>}
      {keys !== null && keys.length > 0 && (
        <table className="grid">
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Key</th>
              <th scope="col">Scope</th>
              <th scope="col">Created</th>
              <th scope="col">Last used</th>
              <th scope="col">Status</th>
              <th scope="col">
                <span className="sr-only">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {keys.map((k) => (
              <tr key={k.id} data-key={k.name}>
                <td>{k.name}</td>
                <td>
                  <code>{k.prefix}…</code>
                </td>
                <td>{k.scope}</td>
                <td>{date(k.created_at)}</td>
                <td>{date(k.last_used_at)}</td>
                <td>{k.active ? 'active' : `revoked ${date(k.revoked_at)}`}</td>
                <td>
                  {k.active && (
                    <button type="button" className="danger" onClick={() => revoke(k)} aria-label={`Revoke ${k.name}`}>
                      Revoke
                    </button>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}

function Users({ me }: { me: Me }) {
  const { items: users, error, setError, load } = useApiList<Member>('/api/v1/users', 'users');
  const [email, setEmail] = useState('');
  const [role, setRole] = useState('viewer');
  const [notice, setNotice] = useState('');


  const act = async (p: Promise<unknown>, done: string) => {
    setError(null);
    setNotice('');
    try {
      await p;
      setNotice(done);
      load();
    } catch (exc) {
      setError(exc);
    }
  };

  return (
    <section aria-labelledby="users-title" className="panel" data-testid="users">
      <h2 id="users-title">Users and roles</h2>
      <p className="muted">Viewers read; members also manage their own keys; admins manage users, keys and settings.</p>
      <form
        className="inline-form"
        onSubmit={async (e) => {
          e.preventDefault();
          setNotice('');
          const invited = await api<{ invitation: { email: string }; code: string }>('/api/v1/users', { method: 'POST', body: { email, role } }).catch((exc) => {
            setError(exc);
            return null;
          });
          if (invited) {
            // The same answer whether or not the person has an account: they accept when logged
            // in, or join with this code (POST /api/v1/invitations/redeem), shown once.
            setNotice(`Invited ${invited.invitation.email}. They accept it after logging in, or join with the code (shown once): ${invited.code}`);
            setEmail('');
            load();
          }
        }}
      >
        <label htmlFor="user-email">Email</label>
        <input id="user-email" type="email" required value={email} onChange={(e) => setEmail(e.target.value)} />
        <label htmlFor="user-role">Role</label>
        <select id="user-role" value={role} onChange={(e) => setRole(e.target.value)}>
          <option>viewer</option>
          <option>member</option>
          <option>admin</option>
        </select>
        <button className="primary" type="submit">
          Invite
        </button>
      </form>
      <p className="notice-line" role="status" data-testid="users-notice">
        {notice}
      </p>
      {error !== null && <ErrorBox error={error} />}
      {users === null && error === null && <Spinner label="Loading users" />}
      {users !== null && (
        <table className="grid">
          <thead>
            <tr>
              <th scope="col">Email</th>
              <th scope="col">Role</th>
              <th scope="col">Status</th>
              <th scope="col">Last sign-in</th>
              <th scope="col">
                <span className="sr-only">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {users.map((u) => (
              <tr key={u.id} data-user={u.email} data-role={u.role}>
                <td>{u.email}</td>
                <td>
                  <label className="sr-only" htmlFor={`role-${u.id}`}>
                    Role of {u.email}
                  </label>
                  <select
                    id={`role-${u.id}`}
                    value={u.role}
                    disabled={u.id === me.user?.id}
                    onChange={(e) => act(api(`/api/v1/users/${u.id}`, { method: 'PATCH', body: { role: e.target.value } }), `${u.email} is now ${e.target.value === 'admin' ? 'an' : 'a'} ${e.target.value}.`)}
                  >
                    <option>viewer</option>
                    <option>member</option>
                    <option>admin</option>
                  </select>
                </td>
                <td>{u.active ? 'active' : 'deactivated'}</td>
                <td>{date(u.last_login_at)}</td>
                <td>
                  {u.id !== me.user?.id && (
                    <button type="button" onClick={() => act(api(`/api/v1/users/${u.id}`, { method: 'PATCH', body: { active: !u.active } }), `${u.email} is ${u.active ? 'deactivated' : 'active again'}.`)}>
                      {u.active ? 'Deactivate' : 'Activate'}
                    </button>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}

export function SettingsPage({ me }: { me: Me }) {
  const canKeys = me.permissions.includes('manage_own_keys') || me.permissions.includes('manage_keys');
  const canUsers = me.permissions.includes('manage_users');
  return (
    <section aria-labelledby="settings-title" className="page">
      <h1 id="settings-title">Settings</h1>
      <section className="panel" aria-labelledby="tenant-title">
        <h2 id="tenant-title">Tenant</h2>
        <p>
          <strong>{me.tenant.name}</strong> (<code>{me.tenant.slug}</code>) — you are signed in as {me.user?.email ?? 'an API key'} with the role{' '}
          <strong>{me.role ?? me.kind}</strong>.
        </p>
        {!canKeys && !canUsers && <p className="muted" data-testid="viewer-note">Your role can read logs only; API keys and users are managed by members and admins.</p>}
      </section>
      {canKeys && <ApiKeys me={me} />}
      {canUsers && <Users me={me} />}
    </section>
  );
}
