import { describe, expect, it, vi } from 'vitest';
import { act, renderHook, waitFor } from '@testing-library/react';
import { useApiList } from './useApiList';

const json = (body: unknown, status = 200) => new Response(JSON.stringify(body), { status });

describe('useApiList', () => {
  it('loads on mount, keeps an error, and a reload clears it', async () => {
    const answers = [json({ detail: 'database unavailable' }, 503), json({ keys: [{ id: 1 }] })];
    const fetch = vi.fn(async () => answers.shift() as Response);
    globalThis.fetch = fetch as unknown as typeof globalThis.fetch;

    const { result } = renderHook(() => useApiList<{ id: number }>('/api/v1/apikeys', 'keys'));
    await waitFor(() => expect(result.current.error).not.toBeNull());
    expect(result.current.items).toBeNull();
    expect(result.current.loading).toBe(false);

    act(() => result.current.load());
    await waitFor(() => expect(result.current.items).toEqual([{ id: 1 }]));
    expect(result.current.error).toBeNull();
    expect(fetch).toHaveBeenCalledTimes(2);
    expect(String((fetch.mock.calls[0] as unknown[])[0])).toBe('/api/v1/apikeys');
  });
});
