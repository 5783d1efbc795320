// One list from the API, loaded on mount and again on `load()`: the list (null until the first
// answer), the last error (cleared by each load) and whether a request is in flight.
import { useCallback, useEffect, useState } from 'react';
import { api } from './api';

export interface ApiList<T> {
  items: T[] | null;
  error: unknown;
  setError: (error: unknown) => void;
  loading: boolean;
  load: () => void;
}

/** GET `path` and keep `body[key]`, e.g. `useApiList<Webhook>('/api/v1/webhooks', 'webhooks')`. */
export function useApiList<T>(path: string, key: string): ApiList<T> {
  const [items, setItems] = useState<T[] | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [loading, setLoading] = useState(false);
  const load = useCallback(() => {
    setError(null);
    setLoading(true);
    api<Record<string, T[]>>(path)
      .then((body) => setItems(body[key]))
      .catch(setError)
      .finally(() => setLoading(false));
  }, [path, key]);
  useEffect(load, [load]);
  return { items, error, setError, loading, load };
}
