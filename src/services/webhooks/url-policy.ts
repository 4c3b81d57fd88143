import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { isIP } from 'node:net';
import ipaddr from 'ipaddr.js';
import { AppError } from '../../errors.js';

// Where outgoing webhooks may go (SSRF): https only, and public addresses only, unless the operator allows
// otherwise (WEBHOOK_ALLOW_INSECURE, WEBHOOK_ALLOW_PRIVATE_NETWORKS). The addresses are checked when an
// endpoint is saved and again at each attempt, by the lookup the connection itself uses, so a name that
// resolves to a public address when checked and to 127.0.0.1 when called (DNS rebinding) is still refused.

export type UrlPolicy = { allowInsecure: boolean; allowPrivateNetworks: boolean };

/** dns.lookup's shape (all addresses): tests inject their own to map names. */
export type LookupAll = (hostname: string) => Promise<LookupAddress[]>;

export const systemLookup: LookupAll = (hostname) =>
  new Promise((resolve, reject) => dnsLookup(hostname, { all: true, verbatim: true }, (error, addresses) => (error ? reject(error) : resolve(addresses))));

const MAX_URL_LENGTH = 2_048;

export const invalidUrl = (message: string, url: string) => new AppError('INVALID_WEBHOOK_URL', message, { url });

/** Loopback, private, link-local, unique-local, metadata (169.254.169.254 is link-local), multicast, reserved...: all but public unicast. */
export function isPublicAddress(address: string): boolean {
  if (!ipaddr.isValid(address)) return false;
  let parsed = ipaddr.parse(address);
  if (parsed.kind() === 'ipv6' && (parsed as ipaddr.IPv6).isIPv4MappedAddress()) parsed = (parsed as ipaddr.IPv6).toIPv4Address();
  return parsed.range() === 'unicast';
}

/** The URL's form: absolute, http(s), no credentials, https unless allowed. */
export function checkUrlShape(raw: string, policy: UrlPolicy): URL {
  const text = raw.trim();
  if (text.length === 0 || text.length > MAX_URL_LENGTH) throw invalidUrl(`A webhook URL must be 1 to ${MAX_URL_LENGTH} characters.`, raw);
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw invalidUrl(`Not an absolute URL: ${JSON.stringify(text)}.`, raw);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw invalidUrl('A webhook URL must use https.', raw);
  if (url.protocol === 'http:' && !policy.allowInsecure) throw invalidUrl('A webhook URL must use https (http is allowed only with WEBHOOK_ALLOW_INSECURE=true).', raw);
  if (url.username || url.password) throw invalidUrl('A webhook URL must not carry credentials.', raw);
  return url;
}

/** The addresses a host resolves to, every one public unless private networks are allowed; INVALID_WEBHOOK_URL otherwise. */
export async function checkedAddresses(hostname: string, policy: UrlPolicy, lookup: LookupAll): Promise<LookupAddress[]> {
  const host = hostname.replace(/^\[|\]$/g, '');
  let addresses: LookupAddress[];
  if (isIP(host)) addresses = [{ address: host, family: isIP(host) }];
  else {
    try {
      addresses = await lookup(host);
    } catch {
      throw invalidUrl(`The host ${host} does not resolve.`, hostname);
    }
  }
  if (addresses.length === 0) throw invalidUrl(`The host ${host} does not resolve.`, hostname);
  if (!policy.allowPrivateNetworks) {
    const refused = addresses.find((a) => !isPublicAddress(a.address));
    if (refused) {
      throw invalidUrl(
        `The host ${host} resolves to ${refused.address}, which is not a public address (loopback, private, link-local and metadata addresses are refused).`,
        hostname,
      );
    }
  }
  return addresses;
}

/** The whole check made when an endpoint is saved. Returns the URL as stored. */
export async function checkWebhookUrl(raw: string, policy: UrlPolicy, lookup: LookupAll): Promise<string> {
  const url = checkUrlShape(raw, policy);
  await checkedAddresses(url.hostname, policy, lookup);
  return url.toString();
}
