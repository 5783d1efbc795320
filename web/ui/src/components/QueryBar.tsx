// The query input: Lucene syntax, field-name completion, syntax errors marked at their position.
import { forwardRef, useImperativeHandle, useRef, useState, type KeyboardEvent } from 'react';
import { applyCompletion, completions, splitAtError } from '../query';

export interface QueryError {
  message: string;
  position?: number;
}

interface Props {
  value: string;
  fields: string[];
  error: QueryError | null;
  onChange: (text: string) => void;
  onRun: () => void;
}

export interface QueryBarHandle {
  focus: () => void;
}

export const QueryBar = forwardRef<QueryBarHandle, Props>(function QueryBar(
  { value, fields, error, onChange, onRun },
  ref,
) {
  const input = useRef<HTMLInputElement>(null);
  const [caret, setCaret] = useState(0);
  const [open, setOpen] = useState(false);
  const [active, setActive] = useState(0);
  // Enter picks a suggestion only after the user moved through the list with the arrows.
  const [activeChosen, setActiveChosen] = useState(false);
  // Leaving the input closes the list a moment later (a click on an option must land first);
  // coming back before then cancels that, or the list would close under the user's typing.
  const closing = useRef<ReturnType<typeof setTimeout>>(undefined);
  const cancelClose = () => clearTimeout(closing.current);
  useImperativeHandle(ref, () => ({ focus: () => input.current?.focus() }));
  const options = open ? completions(value, caret, fields) : [];

  function choose(field: string) {
    const next = applyCompletion(value, caret, field);
    onChange(next.text);
    setOpen(false);
    requestAnimationFrame(() => {
      input.current?.setSelectionRange(next.caret, next.caret);
      setCaret(next.caret);
    });
  }

  function onKeyDown(e: KeyboardEvent<HTMLInputElement>) {
    if (options.length && (e.key === 'ArrowDown' || e.key === 'ArrowUp')) {
      e.preventDefault();
      setActive((a) => (a + (e.key === 'ArrowDown' ? 1 : options.length - 1)) % options.length);
    } else if (options.length && e.key === 'Tab') {
      e.preventDefault();
      choose(options[active] ?? options[0]);
    } else if (e.key === 'Enter') {
      e.preventDefault();
      if (options.length && activeChosen) {
        choose(options[active]);
        return;
      }
      setOpen(false);
      onRun();
    } else if (e.key === 'Escape') {
      if (open) {
        e.stopPropagation();
        setOpen(false);
      } else input.current?.blur();
    }
  }
  const marker = error?.position !== undefined ? splitAtError(value, error.position) : null;
  return (
    <div className="querybar">
      <label htmlFor="query" className="sr-only">
        Query (Lucene syntax)
      </label>
      <div className="query-wrap">
        <input
          id="query"
          ref={input}
          role="combobox"
          aria-expanded={options.length > 0}
          aria-controls="query-completions"
          aria-autocomplete="list"
          aria-invalid={!!error}
          aria-describedby={error ? 'query-error' : undefined}
          aria-activedescendant={options.length && activeChosen ? `completion-${active}` : undefined}
          spellCheck={false}
          autoComplete="off"
          placeholder='Search logs, e.g. level:error AND service:api "timed out"   (press / to focus)'
          value={value}
          onChange={(e) => {
            cancelClose();
            onChange(e.target.value);
            setCaret(e.target.selectionStart ?? e.target.value.length);
            setOpen(true);
            setActive(0);
            setActiveChosen(false);
          }}
          onKeyDown={(e) => {
            if (e.key === 'ArrowDown' || e.key === 'ArrowUp') setActiveChosen(true);
            onKeyDown(e);
          }}
          onKeyUp={(e) => setCaret(e.currentTarget.selectionStart ?? 0)}
          onClick={(e) => setCaret(e.currentTarget.selectionStart ?? 0)}
          onFocus={cancelClose}
          onBlur={() => {
            closing.current = setTimeout(() => setOpen(false), 150);
          }}
        />
        {options.length > 0 && (
          <ul id="query-completions" role="listbox" className="completions" aria-label="Field names">
            {options.map((f, i) => (
              <li
                key={f}
                id={`completion-${i}`}
                role="option"
                aria-selected={i === active}
                onMouseDown={(e) => {
                  e.preventDefault();
                  choose(f);
                }}
              >
                {f}:
              </li>
            ))}
          </ul>
        )}
      </div>
      {error && (
        <div id="query-error" className="query-error" role="alert">
          {marker && (
            <pre className="query-marker" aria-hidden="true">
              {marker[0]}
              <mark>{marker[1]}</mark>
              {marker[2]}
            </pre>
          )}
          <span>
            {error.position !== undefined ? `At position ${error.position + 1}: ` : ''}
            {error.message}
          </span>
        </div>
      )}
    </div>
  );
});
