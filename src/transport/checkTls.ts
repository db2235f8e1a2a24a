import { createPrivateKey, type KeyObject, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { errorMessage, GatewayError } from '../domain/errors.ts';

/** A certificate and its key, read and checked to belong together. */
export interface TlsFiles {
  readonly certFile: string;
  readonly keyFile: string;
  /** SHA-256 fingerprint of the (first) certificate, as `AB:CD:…`. */
  readonly fingerprint256: string;
  readonly subject: string;
  /** When the certificate expires, as the certificate says it. */
  readonly validTo: string;
}

/**
 * Reads a PEM certificate (chain) and its private key (without passphrase) and checks that they
 * match, so that a mistake is a clear error before uWebSockets.js sees the files (at start, and
 * on every reload: a bad reload keeps the certificate in use).
 */
export function checkTls(certFile: string, keyFile: string): TlsFiles {
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(readFileSync(certFile));
  } catch (error) {
    throw new GatewayError(
      'BAD_CONFIG',
      `tlsCert: ${certFile} is not a readable PEM certificate: ${errorMessage(error)}`,
      {
        cause: error,
      },
    );
  }
  let key: KeyObject;
  try {
    key = createPrivateKey(readFileSync(keyFile));
  } catch (error) {
    throw new GatewayError(
      'BAD_CONFIG',
      `tlsKey: ${keyFile} is not a readable PEM private key without passphrase: ${errorMessage(error)}`,
      { cause: error },
    );
  }
  if (!cert.checkPrivateKey(key)) {
    throw new GatewayError('BAD_CONFIG', `tlsKey: ${keyFile} is not the key of the certificate in ${certFile}`);
  }
  return { certFile, keyFile, fingerprint256: cert.fingerprint256, subject: cert.subject, validTo: cert.validTo };
}
