import Sentiment from 'sentiment';

// Analysis of inbound text on ingest: sentiment from the AFINN-165 lexicon (the `sentiment` package),
// Twilio's default keywords for consent, a question heuristic and acknowledgement detection.

export const OPT_OUT_KEYWORDS = ['STOP', 'STOPALL', 'UNSUBSCRIBE', 'CANCEL', 'END', 'QUIT', 'REVOKE', 'OPTOUT'] as const;
export const OPT_IN_KEYWORDS = ['START', 'YES', 'UNSTOP'] as const;
export const HELP_KEYWORDS = ['HELP', 'INFO'] as const;

export type MessageCategory = 'general' | 'question' | 'opt_out' | 'opt_in' | 'help';
export type Keyword = { kind: 'opt_out' | 'opt_in' | 'help'; keyword: string };

export type MessageAnalysis = {
  sentiment: 'positive' | 'negative' | 'neutral';
  /** Polarity in [0, 1]: 0 most negative, 0.5 neutral, 1 most positive. */
  sentimentScore: number;
  category: MessageCategory;
  requiresResponse: boolean;
  optOutDetected: boolean;
  keyword: Keyword | null;
};

const analyzer = new Sentiment();

/** Twilio's rule: the whole body, trimmed, is one keyword (case-insensitive). "stop please" is not one. */
export function detectKeyword(body: string): Keyword | null {
  const word = body.trim().toUpperCase();
  if ((OPT_OUT_KEYWORDS as readonly string[]).includes(word)) return { kind: 'opt_out', keyword: word };
  if ((OPT_IN_KEYWORDS as readonly string[]).includes(word)) return { kind: 'opt_in', keyword: word };
  if ((HELP_KEYWORDS as readonly string[]).includes(word)) return { kind: 'help', keyword: word };
  return null;
}

const QUESTION_START = /^(who|what|when|where|why|how|which|whose|can|could|may|is|are|am|do|does|did|will|would|should|shall|have|has|any)\b/i;
const ACKNOWLEDGEMENT_WORDS = new Set(
  'ok okay k kk thanks thank thx ty you got it sounds good great cool perfect will do np awesome appreciate much so very sure alright all right noted'.split(' '),
);

/** "ok thanks", "Got it!", "👍": short replies made only of acknowledgement words or emoji. */
export function isAcknowledgement(body: string): boolean {
  if (body.includes('?')) return false;
  const words = body
    .toLowerCase()
    .replace(/[\p{P}\p{S}\p{Extended_Pictographic}\u200d\ufe0f]/gu, ' ')
    .split(/\s+/)
    .filter(Boolean);
  if (words.length === 0) return /\p{Extended_Pictographic}/u.test(body);
  return words.length <= 6 && words.every((word) => ACKNOWLEDGEMENT_WORDS.has(word));
}

export function analyzeInbound(body: string): MessageAnalysis {
  const keyword = detectKeyword(body);
  const result = analyzer.analyze(body);
  // comparative = AFINN score per word; tanh maps it onto (-1, 1), then onto [0, 1].
  const sentimentScore = Math.round(((Math.tanh(2 * result.comparative) + 1) / 2) * 1000) / 1000;
  const sentiment = result.score > 0 ? 'positive' : result.score < 0 ? 'negative' : 'neutral';
  const trimmed = body.trim();
  const category: MessageCategory = keyword
    ? keyword.kind
    : trimmed.includes('?') || QUESTION_START.test(trimmed)
      ? 'question'
      : 'general';
  const requiresResponse =
    category === 'opt_out' || category === 'opt_in' ? false : category === 'question' || category === 'help' || !isAcknowledgement(trimmed);
  return { sentiment, sentimentScore, category, requiresResponse, optOutDetected: keyword?.kind === 'opt_out', keyword };
}

/** The message columns an analysis fills. */
export function analysisColumns(analysis: MessageAnalysis) {
  const { sentiment, sentimentScore, category, requiresResponse, optOutDetected } = analysis;
  return { sentiment, sentimentScore, category, requiresResponse, optOutDetected };
}
