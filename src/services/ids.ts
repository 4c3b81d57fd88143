import { randomFillSync } from 'node:crypto';

// Random bytes drawn 4 KiB at a time (as crypto.randomUUID caches its entropy), 10 per id.
const pool = Buffer.alloc(4096);
let offset = pool.length;

/** The millisecond the last id carries, the clock's value when it was taken, and the 12-bit counter within it. */
let lastMs = -1;
let lastGiven = -1;
let counter = 0;

/**
 * A UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, a 12-bit counter, then 62 random bits. A new row keyed by
 * it lands at the right edge of its organization's part of an (organization_id, id) index, a page that stays
 * in memory, where a random UUID lands on any page of the index: once the table outgrows shared_buffers, a
 * likely read and a dirty page to write back for every insert.
 *
 * Within one millisecond the counter (RFC 9562 method 1, starting at a random value below 2048) makes the
 * ids of this process increase in the order they were made, so rows written together (a message's status
 * events) sort by id as they arrived. Past 4,096 ids in one millisecond the next millisecond is borrowed.
 */
export function uuidv7(now = Date.now()): string {
  if (offset + 10 > pool.length) {
    randomFillSync(pool);
    offset = 0;
  }
  // The same millisecond, or one already borrowed that the clock has not passed.
  if (now >= lastGiven && now <= lastMs) {
    counter += 1;
    if (counter > 0xfff) {
      lastMs += 1;
      counter = 0;
    }
  } else {
    lastMs = lastGiven = now;
    counter = pool.readUInt16BE(offset) & 0x7ff;
  }
  const bytes = Buffer.allocUnsafe(16);
  bytes.writeUIntBE(lastMs, 0, 6);
  bytes[6] = 0x70 | (counter >> 8);
  bytes[7] = counter & 0xff;
  pool.copy(bytes, 8, offset + 2, offset + 10);
  offset += 10;
  bytes[8] = 0x80 | (bytes[8]! & 0x3f);
  const hex = bytes.toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
