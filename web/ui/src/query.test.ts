import { describe, expect, it } from 'vitest';
import { applyCompletion, completions, fieldNames, splitAtError, wordAt } from './query';

const FIELDS = fieldNames(['attributes.region', 'attributes.request_id']);

describe('field completion', () => {
  it('finds the word being typed, not values or phrases', () => {
    expect(wordAt('level:error AND ser', 19)).toEqual({ start: 16, word: 'ser' });
    expect(wordAt('service:ap', 10)).toBeNull(); // a value
    expect(wordAt('"time ou', 8)).toBeNull(); // inside a phrase
    expect(wordAt('a AND ', 6)).toBeNull();
    expect(wordAt('x AND', 5)).toBeNull(); // an operator
  });

  it('suggests matching field names, shortest first', () => {
    expect(completions('se', 2, FIELDS)).toEqual(['service']);
    expect(completions('attributes.r', 12, FIELDS)).toEqual(['attributes.region', 'attributes.request_id']);
    expect(completions('level:error AND ho', 18, FIELDS)).toEqual(['host']);
    expect(completions('service', 7, FIELDS)).toEqual([]); // complete already
  });

  it('inserts the field with its colon and puts the caret after it', () => {
    expect(applyCompletion('level:error AND ho rest', 18, 'host')).toEqual({ text: 'level:error AND host: rest', caret: 21 });
  });

  it('splits the query at an error position for the marker', () => {
    expect(splitAtError('level:(', 6)).toEqual(['level:', '(', '']);
    expect(splitAtError('abc', 3)).toEqual(['abc', ' ', '']);
    expect(splitAtError('abc', 99)).toEqual(['abc', ' ', '']);
  });
});
