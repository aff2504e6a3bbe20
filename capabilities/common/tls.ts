// X.509 helpers (node-forge, pure JS: no shell-out to openssl). Used by the Redfish server when no
// certificate Secret exists, by the sandbox cluster for its webhook/Redfish certificates, and by tests.
import { generateKeyPairSync } from "node:crypto";
import { isIP } from "node:net";
import forge from "node-forge";

export interface PemPair {
  certPem: string;
  keyPem: string;
}

export interface ServerCertificateRequest {
  commonName: string;
  dnsNames: string[];
  ipAddresses: string[];
  /** Validity in days (default 365). */
  days?: number;
}

const RSA_BITS = 2048;
const DEFAULT_DAYS = 365;

/** RSA keys from Node's native crypto (node-forge's pure-JS generation takes seconds). */
function generateRsaKeyPair(): { publicKey: forge.pki.rsa.PublicKey; privateKey: forge.pki.rsa.PrivateKey } {
  const pair = generateKeyPairSync("rsa", {
    modulusLength: RSA_BITS,
    publicExponent: 0x10001,
    publicKeyEncoding: { type: "spki", format: "pem" },
    privateKeyEncoding: { type: "pkcs1", format: "pem" },
  });
  return {
    publicKey: forge.pki.publicKeyFromPem(pair.publicKey) as forge.pki.rsa.PublicKey,
    privateKey: forge.pki.privateKeyFromPem(pair.privateKey) as forge.pki.rsa.PrivateKey,
  };
}

function serialNumber(): string {
  // Positive 16-byte serial: a leading 0x00-0x7f byte keeps the DER integer positive.
  const bytes = forge.random.getBytesSync(16);
  const hex = forge.util.bytesToHex(bytes);
  return (parseInt(hex[0], 16) & 0x7).toString(16) + hex.slice(1);
}

function validity(cert: forge.pki.Certificate, days: number): void {
  const now = new Date();
  // Back-date a little so freshly issued certificates verify on machines with small clock skew.
  cert.validity.notBefore = new Date(now.getTime() - 5 * 60 * 1000);
  cert.validity.notAfter = new Date(now.getTime() + days * 24 * 60 * 60 * 1000);
}

function subjectAltNames(dnsNames: string[], ipAddresses: string[]): { type: number; value?: string; ip?: string }[] {
  for (const ip of ipAddresses) {
    if (isIP(ip) === 0) throw new Error(`not an IP address: ${JSON.stringify(ip)}`);
  }
  return [...dnsNames.map(value => ({ type: 2, value })), ...ipAddresses.map(ip => ({ type: 7, ip }))];
}

/** A self-signed CA certificate (basicConstraints CA:true) that can sign server certificates. */
export function createCertificateAuthority(commonName: string, days = 3650): PemPair {
  const keys = generateRsaKeyPair();
  const cert = forge.pki.createCertificate();
  cert.publicKey = keys.publicKey;
  cert.serialNumber = serialNumber();
  validity(cert, days);
  const subject = [{ name: "commonName", value: commonName }];
  cert.setSubject(subject);
  cert.setIssuer(subject);
  cert.setExtensions([
    { name: "basicConstraints", cA: true, critical: true },
    { name: "keyUsage", keyCertSign: true, cRLSign: true, digitalSignature: true, critical: true },
    { name: "subjectKeyIdentifier" },
  ]);
  cert.sign(keys.privateKey, forge.md.sha256.create());
  return { certPem: forge.pki.certificateToPem(cert), keyPem: forge.pki.privateKeyToPem(keys.privateKey) };
}

function serverCertificate(
  request: ServerCertificateRequest,
  issuer: { cert: forge.pki.Certificate; key: forge.pki.rsa.PrivateKey } | undefined,
): PemPair {
  if (request.dnsNames.length === 0 && request.ipAddresses.length === 0) {
    throw new Error("a server certificate needs at least one DNS name or IP address");
  }
  const altNames = subjectAltNames(request.dnsNames, request.ipAddresses);
  const keys = generateRsaKeyPair();
  const cert = forge.pki.createCertificate();
  cert.publicKey = keys.publicKey;
  cert.serialNumber = serialNumber();
  validity(cert, request.days ?? DEFAULT_DAYS);
  cert.setSubject([{ name: "commonName", value: request.commonName }]);
  cert.setIssuer(issuer ? issuer.cert.subject.attributes : [{ name: "commonName", value: request.commonName }]);
  const extensions: object[] = [
    { name: "basicConstraints", cA: false, critical: true },
    { name: "keyUsage", digitalSignature: true, keyEncipherment: true, critical: true },
    { name: "extKeyUsage", serverAuth: true },
    { name: "subjectAltName", altNames },
    { name: "subjectKeyIdentifier" },
  ];
  if (issuer) {
    extensions.push({ name: "authorityKeyIdentifier", keyIdentifier: issuer.cert.generateSubjectKeyIdentifier().getBytes() });
  }
  cert.setExtensions(extensions);
  cert.sign(issuer ? issuer.key : keys.privateKey, forge.md.sha256.create());
  return { certPem: forge.pki.certificateToPem(cert), keyPem: forge.pki.privateKeyToPem(keys.privateKey) };
}

/** A server certificate signed by `ca` (clients trust it through the CA certificate). */
export function issueServerCertificate(ca: PemPair, request: ServerCertificateRequest): PemPair {
  const cert = forge.pki.certificateFromPem(ca.certPem);
  const key = forge.pki.privateKeyFromPem(ca.keyPem) as forge.pki.rsa.PrivateKey;
  return serverCertificate(request, { cert, key });
}

/** A self-signed server certificate (its own trust anchor), e.g. the Redfish fallback when no Secret exists. */
export function createSelfSignedServerCertificate(request: ServerCertificateRequest): PemPair {
  return serverCertificate(request, undefined);
}
