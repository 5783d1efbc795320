// Sign in, and choose a tenant when the account belongs to several.
import { useState, type FormEvent } from 'react';
import { login, type TokenPair } from '../api';
import type { Me } from '../types';
import { ThemeToggle } from '../components/ThemeToggle';

interface Props {
  onSignedIn: () => void | Promise<void>;
  /** Set when a signed-in user switches tenant (tokens are issued per tenant). */
  switching: Me | null;
}

export function LoginPage({ onSignedIn, switching }: Props) {
  const [email, setEmail] = useState(switching?.user?.email ?? '');
  const [password, setPassword] = useState('');
  const [tenants, setTenants] = useState<TokenPair['tenants']>(switching?.tenants ?? []);
  const [tenant, setTenant] = useState(switching?.tenant.slug ?? '');
  const [error, setError] = useState('');
  const [busy, setBusy] = useState(false);
  const choosing = tenants.length > 1;

  async function submit(event: FormEvent) {
    event.preventDefault();
    setBusy(true);
    setError('');
    try {
      const pair = await login(email.trim(), password, choosing ? tenant : undefined);
      if (!choosing && pair.tenants.length > 1) {
        // Signed in to the default tenant; offer the others before going on.
        setTenants(pair.tenants);
        setTenant(pair.tenant);
        return;
      }
      await onSignedIn();
    } catch (exc) {
      setError((exc as Error).message);
    } finally {
      setBusy(false);
    }
  }

  return (
    <main className="login">
      <div className="login-theme">
        <ThemeToggle />
      </div>
      <form className="card" onSubmit={submit} aria-labelledby="login-title">
        <h1 id="login-title">{switching ? 'Switch tenant' : 'Sign in to LaaS'}</h1>
        <label htmlFor="email">Email</label>
        <input
          id="email"
          type="email"
          autoComplete="username"
          required
          autoFocus={!switching}
          value={email}
          onChange={(e) => setEmail(e.target.value)}
        />
        <label htmlFor="password">Password</label>
        <input
          id="password"
          type="password"
          autoComplete="current-password"
          required
          autoFocus={!!switching}
          value={password}
          onChange={(e) => setPassword(e.target.value)}
        />
        {choosing && (
          <>
            <label htmlFor="tenant">Tenant</label>
            <select id="tenant" value={tenant} onChange={(e) => setTenant(e.target.value)}>
              {tenants.map((t) => (
                <option key={t.slug} value={t.slug}>
                  {t.name} ({t.slug}, {t.role})
                </option>
              ))}
            </select>
          </>
        )}
        {error && (
          <p className="form-error" role="alert">
            {error}
          </p>
        )}
        <button className="primary" type="submit" disabled={busy}>
          {busy ? 'Signing in…' : choosing ? 'Continue' : 'Sign in'}
        </button>
      </form>
    </main>
  );
}
