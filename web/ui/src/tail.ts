// Live tail over the WebSocket `/api/v1/tail` (protocol: web/tail.py).
import { useEffect, useRef, useState } from 'react';
import { session } from './api';
import type { LogHit } from './types';

export const MAX_LIVE = 2000;

export interface TailState {
  events: LogHit[]; // newest first
  status: 'connecting' | 'live' | 'reconnecting' | 'error';
  error: string;
  dropped: number;
  buffered: number; // events held back while paused
}

export type TailMessage =
  | { type: 'event'; event: LogHit }
  | { type: 'ready'; history: number }
  | { type: 'notice'; dropped: number; detail: string }
  | { type: 'heartbeat'; time: string }
  | { type: 'error'; detail: string; position?: number; parameter?: string };

export function tailUrl(q: string, since: string, token: string, origin = window.location): string {
  const scheme = origin.protocol === 'https:' ? 'wss:' : 'ws:';
  const params = new URLSearchParams({ token });
  if (q) params.set('q', q);
  if (since) params.set('since', since);
  return `${scheme}//${origin.host}/api/v1/tail?${params}`;
}

/** Apply one message to the state (pure, for tests); events go to the buffer while paused. */
export function reduceTail(
  state: TailState,
  pending: LogHit[],
  message: TailMessage,
  paused: boolean,
): [TailState, LogHit[]] {
  switch (message.type) {
    case 'event':
      if (paused) return [{ ...state, buffered: pending.length + 1 }, [message.event, ...pending].slice(0, MAX_LIVE)];
      return [{ ...state, events: [message.event, ...state.events].slice(0, MAX_LIVE) }, pending];
    case 'ready':
      return [{ ...state, status: 'live', error: '' }, pending];
    case 'notice':
      return [{ ...state, dropped: state.dropped + message.dropped }, pending];
    case 'error':
      return [{ ...state, status: 'error', error: message.detail }, pending];
    default:
      return [state, pending];
  }
}

const INITIAL: TailState = { events: [], status: 'connecting', error: '', dropped: 0, buffered: 0 };

/** Follow the tail for `q` while `enabled`; reconnects with backoff after an unexpected close. */
export function useTail(q: string, since: string, enabled: boolean, paused: boolean): TailState {
  const [state, setState] = useState<TailState>(INITIAL);
  const pending = useRef<LogHit[]>([]);
  const pausedRef = useRef(paused);
  pausedRef.current = paused;

  useEffect(() => {
    if (!paused && pending.current.length) {
      const held = pending.current;
      pending.current = [];
      setState((s) => ({ ...s, buffered: 0, events: [...held, ...s.events].slice(0, MAX_LIVE) }));
    }
  }, [paused]);

  useEffect(() => {
    if (!enabled) return;
    let socket: WebSocket | null = null;
    let stopped = false;
    let attempt = 0;
    let timer: ReturnType<typeof setTimeout> | undefined;
    let first = true;
    setState(INITIAL);
    pending.current = [];

    const connect = async () => {
      if (!session.access) await session.refresh();
      if (stopped) return;
      // History only on the first connection; a reconnect continues live.
      socket = new WebSocket(tailUrl(q, first ? since : '', session.access ?? ''));
      socket.onmessage = (e) => {
        const message = JSON.parse(e.data) as TailMessage;
        if (message.type === 'ready') {
          attempt = 0;
          first = false;
        }
        setState((s) => {
          const [next, held] = reduceTail(s, pending.current, message, pausedRef.current);
          pending.current = held;
          return next;
        });
      };
      socket.onclose = async (e) => {
        if (stopped || e.code === 4400) return; // 4400: bad filter, already reported
        // 1008: refused at connect; 4401: the token expired (or the session ended) while open
        if (e.code === 1008 || e.code === 4401) await session.refresh();
        attempt += 1;
        const delay = Math.min(10_000, 500 * 2 ** attempt);
        setState((s) => ({ ...s, status: 'reconnecting', error: `Connection lost; reconnecting in ${Math.round(delay / 1000)} s` }));
        timer = setTimeout(connect, delay);
      };
    };
    connect();
    return () => {
      stopped = true;
      clearTimeout(timer);
      socket?.close(1000);
    };
  }, [q, since, enabled]);

  return state;
}
