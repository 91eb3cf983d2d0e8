/** Paths and URLs as io/location.ts composes and names them (the readers are tested over HTTP in fetch-source.test.ts). */
import { describe, expect, it } from 'vitest';
import { childOf, isFetched, locationLabel, parentOf } from '../../src/io/location.js';

describe('file locations', () => {
  it('finds a file in a folder and the folder of a file, for paths and URLs alike', () => {
    expect(childOf('models/ofa', 'config.json')).toBe('models/ofa/config.json');
    expect(childOf('models/ofa/', 'config.json')).toBe('models/ofa/config.json');
    expect(childOf(new URL('https://host/models/ofa'), 'config.json').toString()).toBe('https://host/models/ofa/config.json');
    expect(childOf(new URL('https://host/models/ofa/'), 'config.json').toString()).toBe('https://host/models/ofa/config.json');
    expect(parentOf('models/ofa/weights.safetensors')).toBe('models/ofa');
    expect(parentOf('/weights.safetensors')).toBe('/');
    expect(parentOf('weights.safetensors')).toBe('.');
    expect(parentOf(new URL('https://host/models/ofa/weights.safetensors')).toString()).toBe('https://host/models/ofa/');
  });

  it('fetches URLs (objects or strings), reads paths and file: URLs from disk, and names file: URLs by their path', () => {
    expect(isFetched(new URL('file:///models/a%20b/config.json'))).toBe(false);
    expect(isFetched(new URL('blob:https://host/1234'))).toBe(true);
    expect(isFetched('https://host/a-url-as-a-string/')).toBe(true);
    expect(isFetched('models/https:/not-a-url')).toBe(false);
    expect(locationLabel(new URL('file:///models/a%20b/config.json'))).toBe('/models/a b/config.json');
    expect(locationLabel(new URL('https://host/m/config.json'))).toBe('https://host/m/config.json');
  });
});
