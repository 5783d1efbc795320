// Copies a secret shown once (an API key, a webhook's signing secret) to the clipboard.
import { useState } from 'react';

export function CopyButton({ text, label = 'Copy' }: { text: string; label?: string }) {
  const [done, setDone] = useState('');
  return (
    <button
      type="button"
      onClick={async () => {
        try {
          await navigator.clipboard.writeText(text);
          setDone('Copied');
        } catch {
          setDone('Copy failed: select the text and copy it by hand');
        }
      }}
    >
      {done || label}
    </button>
  );
}
