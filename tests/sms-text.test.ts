import { describe, expect, it } from 'vitest';
import { planShortLinks } from '../src/services/short-links.js';
import { bodyLength, measureSmsText, normalizeSmsText } from '../src/services/sms-text.js';

// Segment rules as Twilio publishes them: GSM-7 160 characters, 153 per part; one non-GSM character
// makes the message UCS-2, 70 characters, 67 per part; ^{}\[~]|€ take two GSM-7 positions; characters
// outside the BMP take two UCS-2 units. Twilio's own example: "a 161-character message will be sent as
// two messages: one with 153 characters and a second with eight characters".

describe('segments and encoding', () => {
  it.each([
    ['a'.repeat(160), 'GSM-7', 1],
    ['a'.repeat(161), 'GSM-7', 2],
    ['a'.repeat(306), 'GSM-7', 2],
    ['a'.repeat(307), 'GSM-7', 3],
    ['a'.repeat(1530), 'GSM-7', 10],
    ['€'.repeat(80), 'GSM-7', 1],
    ['€'.repeat(81), 'GSM-7', 2],
    ['{}'.repeat(40), 'GSM-7', 1],
    ['[' + 'a'.repeat(159), 'GSM-7', 2],
    ['Ωé ñ Ü ß'.repeat(20), 'GSM-7', 1],
    ['ж'.repeat(70), 'UCS-2', 1],
    ['ж'.repeat(71), 'UCS-2', 2],
    ['ж'.repeat(134), 'UCS-2', 2],
    ['ж'.repeat(135), 'UCS-2', 3],
    ['a'.repeat(69) + '😀', 'UCS-2', 2],
    ['😀'.repeat(35), 'UCS-2', 1],
    ['😀'.repeat(36), 'UCS-2', 2],
    ['a'.repeat(159) + '’', 'UCS-2', 3],
  ] as const)('%#: %s', (text, encoding, segments) => {
    expect(measureSmsText(text)).toMatchObject({ encoding, segments });
  });

  it('splits 161 GSM-7 characters 153 + 8 (Twilio example)', () => {
    const message = measureSmsText('x'.repeat(161));
    expect(message.segments).toBe(2);
    expect(message.characters).toBe(161);
  });
});

describe('normalization', () => {
  it('turns look-alike punctuation into GSM-7, keeps emoji', () => {
    expect(normalizeSmsText('“Hi” — it’s 10\u00a0am… ‘ok’ – see you')).toBe("\"Hi\" - it's 10 am... 'ok' - see you");
    expect(measureSmsText(normalizeSmsText('“Hi” — it’s…')).encoding).toBe('GSM-7');
    const withEmoji = normalizeSmsText('Great news — approved! 🎉');
    expect(withEmoji).toBe('Great news - approved! 🎉');
    expect(measureSmsText(withEmoji).encoding).toBe('UCS-2');
  });

  it('leaves GSM-7 text alone', () => {
    const text = 'Hello {name}, café at 5€ [ok] ~ ^ | \\ 100%';
    expect(normalizeSmsText(text)).toBe(text);
  });

  it('counts body length in code points', () => {
    expect(bodyLength('😀😀')).toBe(2);
    expect(bodyLength('abc')).toBe(3);
  });
});

describe('short link planning', () => {
  it('replaces http(s) URLs, one code per URL, and leaves the rest', () => {
    const plan = planShortLinks(
      'See https://example.org/a?b=1&c=2. Or http://x.io/p, https://example.org/a?b=1&c=2, acme.com, mailto:a@b.co, ftp://f.io/x',
      'https://s.example/',
    );
    expect(plan.links.map((l) => l.url)).toEqual(['https://example.org/a?b=1&c=2', 'http://x.io/p']);
    const [a, b] = plan.links;
    expect(a!.code).toMatch(/^[A-Za-z0-9_-]{8}$/);
    expect(a!.shortUrl).toBe(`https://s.example/l/${a!.code}`);
    expect(plan.text).toBe(`See ${a!.shortUrl}. Or ${b!.shortUrl}, ${a!.shortUrl}, acme.com, mailto:a@b.co, ftp://f.io/x`);
  });

  it('does not shorten its own short links again', () => {
    const text = 'Again: https://s.example/l/abcdefgh';
    expect(planShortLinks(text, 'https://s.example')).toEqual({ text, links: [] });
  });

  it('makes unguessable codes', () => {
    const codes = new Set(Array.from({ length: 2000 }, () => planShortLinks('https://a.io', 'https://s.example').links[0]!.code));
    expect(codes.size).toBe(2000);
  });
});
