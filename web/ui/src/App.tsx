// The shell: session restore, sign-in gate, navigation, theme, and the pages.
import { useCallback, useEffect, useState } from 'react';
import { api, logout, session } from './api';
import type { Me } from './types';
import { navigate, useLocation } from './router';
import { LoginPage } from './pages/Login';
import { ExplorePage } from './pages/Explore';
import { SourcesPage } from './pages/Sources';
import { SettingsPage } from './pages/Settings';
import { PatternsPage } from './pages/Patterns';
import { AlertsPage } from './pages/Alerts';
import { ThemeToggle } from './components/ThemeToggle';
import { Spinner } from './components/Status';

type Phase = { kind: 'loading' } | { kind: 'signed-out' } | { kind: 'signed-in'; me: Me };

const PAGES = [
  { path: '/explore', label: 'Explore' },
  { path: '/patterns', label: 'Patterns' },
  { path: '/alerts', label: 'Alerts' },
  { path: '/sources', label: 'Sources' },
  { path: '/settings', label: 'Settings' },
];

export function App() {
  const [phase, setPhase] = useState<Phase>({ kind: 'loading' });
  const { path, search } = useLocation();

  const loadMe = useCallback(async () => {
    try {
      setPhase({ kind: 'signed-in', me: await api<Me>('/api/v1/me') });
    } catch {
      setPhase({ kind: 'signed-out' });
    }
  }, []);

  useEffect(() => {
    // A reload keeps the session: the stored refresh token buys a new access token.
    if (session.refreshToken) session.refresh().then((ok) => (ok ? loadMe() : setPhase({ kind: 'signed-out' })));
    else setPhase({ kind: 'signed-out' });
    return session.onChange((pair) => {
      if (!pair) setPhase({ kind: 'signed-out' });
    });
  }, [loadMe]);

  if (phase.kind === 'loading') {
    return (
      <main className="center">
        <Spinner label="Restoring your session" />
      </main>
    );
  }
  if (phase.kind === 'signed-out' || path === '/login') {
    return (
      <LoginPage
        onSignedIn={async () => {
          await loadMe();
          const next = new URLSearchParams(search).get('next');
          navigate(next && next.startsWith('/') && !next.startsWith('//') ? next : path === '/login' || path === '/' ? '/explore' : path + search, { replace: true });
        }}
        switching={phase.kind === 'signed-in' ? phase.me : null}
      />
    );
  }
  const me = phase.me;
  const page = PAGES.find((p) => path.startsWith(p.path))?.path ?? '/explore';
  if (path === '/') navigate('/explore', { replace: true });
  return (
    <div className="app">
      <a className="skip" href="#main">
        Skip to content
      </a>
      <header className="topbar">
        <span className="brand" aria-label="LaaS">
          LaaS
        </span>
        <nav aria-label="Pages">
          {PAGES.map((p) => (
            <a
              key={p.path}
              href={p.path}
              aria-current={page === p.path ? 'page' : undefined}
              onClick={(e) => {
                e.preventDefault();
                navigate(p.path);
              }}
            >
              {p.label}
            </a>
          ))}
        </nav>
        <span className="spacer" />
        <span className="who" data-testid="who">
          {me.user?.email} · <strong>{me.tenant.name}</strong> ({me.role})
        </span>
        {me.tenants.length > 1 && (
          <button type="button" onClick={() => navigate('/login?switch=1')}>
            Switch tenant
          </button>
        )}
        <ThemeToggle />
        <button
          type="button"
          onClick={async () => {
            await logout();
            navigate('/login', { replace: true });
          }}
        >
          Sign out
        </button>
      </header>
      <main id="main" tabIndex={-1}>
        {page === '/explore' && <ExplorePage search={search} />}
        {page === '/patterns' && <PatternsPage search={search} />}
        {page === '/alerts' && <AlertsPage me={me} />}
        {page === '/sources' && <SourcesPage />}
        {page === '/settings' && <SettingsPage me={me} />}
      </main>
    </div>
  );
}
