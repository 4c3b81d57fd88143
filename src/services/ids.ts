import { randomFillSync } from 'node:crypto';

// Random bytes drawn 4 KiB at a time (as crypto.randomUUID caches its entropy), 10 per id.
const pool = Buffer.alloc(4096);
let offset = pool.length;

/**
 * A UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, then 74 random bits. A new row keyed by it lands at the
 * right edge of its organization's part of an (organization_id, id) index, a page that stays in memory, where a
 * random UUID lands on any page of the index: once the table outgrows shared_buffers, a likely read and a
 * dirty page to write back for every insert.
 */
export function uuidv7(now = Date.now()): string {
  if (offset + 10 > pool.length) {
    randomFillSync(pool);
    offset = 0;
  }
  const bytes = Buffer.allocUnsafe(16);
  bytes.writeUIntBE(now, 0, 6);
  pool.copy(bytes, 6, offset, offset + 10);
  offset += 10;
  bytes[6] = 0x70 | (bytes[6]! & 0x0f);
  bytes[8] = 0x80 | (bytes[8]! & 0x3f);
  const hex = bytes.toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
