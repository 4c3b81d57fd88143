import { SegmentedMessage } from 'sms-segments-calculator';

// Text rules for SMS, delegated to Twilio's own segment calculator (sms-segments-calculator, from
// TwilioDevEd/message-segment-calculator): GSM-7 vs UCS-2 detection, extension characters counting
// double, 160/153 and 70/67 segment sizes, and Twilio's Smart Encoding table for normalization.

export type Encoding = 'GSM-7' | 'UCS-2';

/** Twilio's limit for one message body. */
export const MAX_BODY_CHARACTERS = 1600;

// Smart Encoding maps these spaces to two spaces; one space is what a sender of "10\u00a0am" means.
const SPACES = /[\u00a0\u2000-\u200a\u202f\u205f\u3000]/g;

/**
 * Replaces smart quotes, dashes, ellipses, odd spaces and similar look-alikes with their GSM-7
 * equivalents, so a message that only looked Unicode goes out as GSM-7. Characters with no
 * equivalent (emoji, most non-Latin scripts) are kept, and the message stays UCS-2.
 */
export function normalizeSmsText(text: string): string {
  if (PLAIN_GSM.test(text)) return text;
  return new SegmentedMessage(text.replace(SPACES, ' '), 'auto', true).graphemes.join('');
}

/**
 * Printable ASCII that GSM-7 holds in its basic table (not ` and not the extension characters
 * ^{}\\[]~| that take two positions), and line feeds: nothing to normalize, one position per character.
 * The calculator's answer for such text is known without building its grapheme and segment tables,
 * which cost most of a reply's CPU.
 */
const PLAIN_GSM = /^[\n !-Z_a-z]*$/;

export type TextMeasure = { encoding: Encoding; segments: number; characters: number };

/** Encoding and segment count of a body exactly as it will be sent. */
export function measureSmsText(text: string): TextMeasure {
  if (PLAIN_GSM.test(text)) {
    // One GSM-7 position per character: 160 in one segment, 153 per part when split.
    const segments = text.length <= 160 ? 1 : Math.ceil(text.length / 153);
    return { encoding: 'GSM-7', segments, characters: text.length };
  }
  const message = new SegmentedMessage(text, 'auto', false);
  return {
    encoding: message.encodingName,
    segments: message.segmentsCount,
    characters: message.numberOfCharacters,
  };
}

/** Length as Twilio counts it against the 1,600 limit: Unicode code points. */
export function bodyLength(text: string): number {
  let count = 0;
  for (const _ of text) count += 1;
  return count;
}
