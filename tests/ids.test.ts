import { describe, expect, it } from 'vitest';
import { isUuid } from '../src/services/cursors.js';
import { uuidv7 } from '../src/services/ids.js';

describe('uuidv7', () => {
  it('is a version 7, RFC 9562 variant UUID whose first 48 bits are the milliseconds given', () => {
    const at = Date.UTC(2026, 10, 27, 4, 5, 6, 789);
    const id = uuidv7(at);
    expect(isUuid(id)).toBe(true);
    expect(id[14]).toBe('7');
    expect(['8', '9', 'a', 'b']).toContain(id[19]);
    expect(parseInt(id.replaceAll('-', '').slice(0, 12), 16)).toBe(at);
  });

  it('orders ids of later milliseconds after earlier ones and never repeats', () => {
    const ids = Array.from({ length: 2000 }, (_, i) => uuidv7(1_700_000_000_000 + Math.floor(i / 100)));
    expect(new Set(ids).size).toBe(ids.length);
    for (let i = 100; i < ids.length; i += 100) expect(ids[i - 1]! < ids[i]!).toBe(true);
  });

  it('orders ids made in the same millisecond in the order they were made, borrowing the next one past 4,096', () => {
    const at = 1_800_000_000_000;
    const ids = Array.from({ length: 5000 }, () => uuidv7(at));
    for (let i = 1; i < ids.length; i += 1) expect(ids[i - 1]! < ids[i]!).toBe(true);
    expect(parseInt(ids[0]!.replaceAll('-', '').slice(0, 12), 16)).toBe(at);
    expect(parseInt(ids.at(-1)!.replaceAll('-', '').slice(0, 12), 16)).toBe(at + 1);
    for (const id of ids) expect(isUuid(id) && id[14] === '7' && ['8', '9', 'a', 'b'].includes(id[19]!)).toBe(true);
  });
});
