// HTTP client for the LaaS API: bearer tokens, one shared refresh on 401, errors in words.

export interface TokenPair {
  access_token: string;
  refresh_token: string;
  expires_in: number;
  tenant: string;
  role: string;
  user: { id: number; email: string };
  tenants: { slug: string; name: string; role: string }[];
}

/** An API failure with a sentence a person can act on. */
export class ApiError extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly body: Record<string, unknown> = {},
  ) {
    super(message);
  }
  /** Character offset of a query syntax error (search 400s), if the API gave one. */
  get position(): number | undefined {
    return typeof this.body.position === 'number' ? this.body.position : undefined;
  }
}

const REFRESH_KEY = 'laas.refresh';

type Listener = (pair: TokenPair | null) => void;

/** Holds the session's tokens; the refresh token survives reloads in localStorage. */
export class Session {
  access: string | null = null;
  private refreshing: Promise<boolean> | null = null;
  private listeners = new Set<Listener>();

  get refreshToken(): string | null {
    return localStorage.getItem(REFRESH_KEY);
  }

  onChange(listener: Listener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  set(pair: TokenPair | null): void {
    this.access = pair?.access_token ?? null;
    if (pair) localStorage.setItem(REFRESH_KEY, pair.refresh_token);
    else localStorage.removeItem(REFRESH_KEY);
    this.listeners.forEach((l) => l(pair));
  }

  /** Trade the refresh token for a new pair; concurrent callers share one request, because
   * the API treats a refresh token used twice as stolen and ends the session. */
  refresh(): Promise<boolean> {
    const token = this.refreshToken;
    if (!token) return Promise.resolve(false);
    this.refreshing ??= (async () => {
      try {
        const res = await fetch('/api/v1/auth/refresh', {
          method: 'POST',
          headers: { 'Content-Type': 'application/json' },
          body: JSON.stringify({ refresh_token: token }),
        });
        if (!res.ok) {
          this.set(null);
          return false;
        }
        this.set((await res.json()) as TokenPair);
        return true;
      } catch {
        return false;
      } finally {
        this.refreshing = null;
      }
    })();
    return this.refreshing;
  }
}

export const session = new Session();

/** A sentence for an API error body (`{error, detail, parameter?}`) and status. */
export function describeError(status: number, body: Record<string, unknown>): string {
  const detail = typeof body.detail === 'string' ? body.detail : '';
  const parameter = typeof body.parameter === 'string' ? body.parameter : '';
  if (status === 0) return 'The LaaS server cannot be reached. Check your connection and retry.';
  if (status === 401) return detail ? `Not signed in: ${detail}.` : 'Please sign in again.';
  if (status === 403) return detail ? `Not allowed: ${detail}.` : 'You are not allowed to do this.';
  if (status === 404) return detail || 'Not found.';
  if (status === 429) return detail || 'Too many attempts; wait a moment and retry.';
  if (status === 400 && parameter) return `Invalid ${parameter}: ${detail}`;
  if (status >= 500 && !detail) return `The server failed (HTTP ${status}); retry shortly.`;
  return detail || `Request failed (HTTP ${status}).`;
}

export interface RequestOptions {
  method?: string;
  body?: unknown;
  params?: Record<string, string | number | undefined | null>;
  signal?: AbortSignal;
}

export function withParams(path: string, params?: RequestOptions['params']): string {
  if (!params) return path;
  const search = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== '') search.set(k, String(v));
  }
  const text = search.toString();
  return text ? `${path}?${text}` : path;
}

/** Call the API as the signed-in user; refreshes the access token once on 401. */
export async function api<T>(path: string, options: RequestOptions = {}): Promise<T> {
  const send = async (): Promise<Response> => {
    const headers: Record<string, string> = {};
    if (session.access) headers.Authorization = `Bearer ${session.access}`;
    if (options.body !== undefined) headers['Content-Type'] = 'application/json';
    try {
      return await fetch(withParams(path, options.params), {
        method: options.method ?? 'GET',
        headers,
        body: options.body === undefined ? undefined : JSON.stringify(options.body),
        signal: options.signal,
      });
    } catch (exc) {
      if ((exc as Error).name === 'AbortError') throw exc;
      throw new ApiError(describeError(0, {}), 0);
    }
  };
  let res = await send();
  if (res.status === 401 && session.refreshToken && (await session.refresh())) {
    res = await send();
  }
  if (res.status === 204) return undefined as T;
  let body: Record<string, unknown> = {};
  try {
    body = await res.json();
  } catch {
    body = {};
  }
  if (!res.ok) {
    if (res.status === 401) session.set(null);
    throw new ApiError(describeError(res.status, body), res.status, body);
  }
  return body as T;
}

export async function login(email: string, password: string, tenant?: string): Promise<TokenPair> {
  const res = await fetch('/api/v1/auth/login', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(tenant ? { email, password, tenant } : { email, password }),
  }).catch(() => null);
  if (!res) throw new ApiError(describeError(0, {}), 0);
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw new ApiError(describeError(res.status, body), res.status, body);
  session.set(body as TokenPair);
  return body as TokenPair;
}

export async function logout(): Promise<void> {
  const refresh = session.refreshToken;
  try {
    await fetch('/api/v1/auth/logout', {
      method: 'POST',
      headers: {
        'Content-Type': 'application/json',
        ...(session.access ? { Authorization: `Bearer ${session.access}` } : {}),
      },
      body: JSON.stringify(refresh ? { refresh_token: refresh } : {}),
    });
  } finally {
    session.set(null);
  }
}
