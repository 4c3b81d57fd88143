// The seam between the gateway and whoever delivers texts. Services talk to this interface only;
// `twilio` is imported in ./twilio/ and nowhere else.

export type OutgoingMessage = {
  organizationId: string;
  /** Our message id (the row already stored with status queued). */
  messageId: string;
  /** E.164 recipient and sender. */
  to: string;
  from: string;
  /** A Twilio Messaging Service (MG…) of the sending number: the send names it instead of `from`. */
  messagingServiceSid?: string | null;
  body: string;
  mediaUrls: string[];
  /** Deliver as MMS even without media (route MMS forced). */
  sendAsMms: boolean;
  /** Where the provider reports delivery statuses. */
  statusCallbackUrl: string;
};

export type SendResult =
  | { ok: true; providerMessageId: string; /** lower-case Twilio status, usually queued */ status: string }
  | {
      ok: false;
      inDoubt?: false;
      /** The provider's error code (Twilio's numeric codes: 21610, 21211, 21614, 30003 ...), null for network failures. */
      errorCode: number | null;
      message: string;
      /** The provider's documentation link for the code (Twilio's more_info). */
      moreInfo?: string | null;
      /** Never sent: no slot free among TWILIO_MAX_CONCURRENT_REQUESTS within the provider timeout (PROVIDER_BUSY). */
      busy?: boolean;
    }
  /**
   * The request may have reached the provider but no answer came back (a timeout, a connection lost after
   * the request was written): the message may exist. Settled later with findSend, never refunded blindly.
   */
  | { ok: false; inDoubt: true; message: string };

export type LineTypeResult = {
  /** true: mobile, can receive SMS; false: landline, VoIP and other kinds that cannot. */
  textable: boolean;
  lineType: string | null;
};

/** A send we stored but never heard the provider's answer to (the process stopped during the call). */
export type SendInDoubt = {
  to: string;
  from: string;
  /** Sent through this Messaging Service: Twilio picked the sender, so `from` does not narrow the search. */
  messagingServiceSid?: string | null;
  body: string;
  /** When we reserved it: the provider created it, if at all, within the provider timeout after. */
  createdAt: Date;
};

/** What the provider knows of a send in doubt; `unknown` when it cannot say (yet). */
export type SendRecord =
  | { kind: 'sent'; providerMessageId: string; /** lower-case Twilio status */ status: string }
  | { kind: 'not_sent' }
  | { kind: 'unknown'; reason: string };

export interface SmsProvider {
  /** Stored on each message (`provider`) and returned by sendReply. */
  readonly name: 'twilio' | 'simulated';
  /** Never throws: failures come back as `{ ok: false }`. */
  send(message: OutgoingMessage): Promise<SendResult>;
  /** Whether the provider has a send we never heard the answer to, and its id. Never throws. */
  findSend(send: SendInDoubt, withinMs: number): Promise<SendRecord>;
  /** Line type of a number. Throws when the answer is unknown (the contact stays pending and is retried). */
  lookupLineType(phoneNumber: string): Promise<LineTypeResult>;
  /** Stops timers and pending work (tests, shutdown). */
  close(): Promise<void>;
}

/** Twilio error codes the send path acts on. */
export const PROVIDER_ERRORS = {
  /** The recipient replied STOP to this sender. */
  UNSUBSCRIBED: 21610,
  /** The 'To' number is not a valid phone number. */
  INVALID_TO: 21211,
  /** The 'To' number is not a mobile number. */
  NOT_MOBILE: 21614,
} as const;
