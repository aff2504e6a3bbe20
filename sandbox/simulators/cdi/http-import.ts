// CDI's http data source (pkg/importer/http-datasource.go) without the disk: a GET with the importer's user
// agent, basic auth from the DataVolume's secret, extra headers, custom CAs added to the system ones, redirects
// followed (auth kept, like CDI's CheckRedirect), a 200 required; the body is counted and discarded (the
// sandbox stores no images). Errors carry CDI's wording, which ends up in the DataVolume's Running condition.
import http from "node:http";
import https from "node:https";
import tls from "node:tls";

export interface HttpImportOptions {
  url: string;
  basicAuth?: { username: string; password: string };
  /** PEM CA certificates trusted in addition to the system ones (the DataVolume's certConfigMap). */
  caPems?: string[];
  /** "Name: value" strings, as in spec.source.http.extraHeaders. */
  extraHeaders?: string[];
  signal: AbortSignal;
  onProgress(received: number, total: number | undefined): void;
}

/** An import failure with the message CDI's importer would terminate with. */
export class ImportError extends Error {}

const USER_AGENT = "cdi-golang-importer";
const MAX_REDIRECTS = 10;

function headersFor(opts: HttpImportOptions): Record<string, string> {
  const headers: Record<string, string> = { "User-Agent": USER_AGENT };
  for (const header of opts.extraHeaders ?? []) {
    const colon = header.indexOf(":");
    if (colon > 0) headers[header.slice(0, colon).trim()] = header.slice(colon + 1).trim();
  }
  if (opts.basicAuth) headers.Authorization = `Basic ${Buffer.from(`${opts.basicAuth.username}:${opts.basicAuth.password}`).toString("base64")}`;
  return headers;
}

function get(url: URL, opts: HttpImportOptions): Promise<http.IncomingMessage> {
  return new Promise((resolve, reject) => {
    const options: https.RequestOptions = { method: "GET", headers: headersFor(opts), signal: opts.signal, agent: false };
    if (url.protocol === "https:" && opts.caPems?.length) options.ca = [...tls.rootCertificates, ...opts.caPems];
    const request = (url.protocol === "https:" ? https : http).request(url, options, resolve);
    request.on("error", reject);
    request.end();
  });
}

function parseEndpoint(raw: string): URL {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new ImportError(`Unable to connect to http data source: unable to parse endpoint "${raw}": invalid URL`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:")
    throw new ImportError(`Unable to connect to http data source: unable to parse endpoint "${raw}": unsupported protocol scheme "${url.protocol.replace(/:$/, "")}"`);
  return url;
}

/** Downloads the source to nowhere, reporting progress; resolves with the byte count, rejects with ImportError. */
export async function httpImport(opts: HttpImportOptions): Promise<{ bytes: number; total?: number }> {
  let url = parseEndpoint(opts.url);
  let response: http.IncomingMessage | undefined;
  for (let redirects = 0; ; redirects++) {
    try {
      response = await get(url, opts);
    } catch (err) {
      if (opts.signal.aborted) throw err;
      throw new ImportError(`Unable to connect to http data source: HTTP request errored: Get "${url.href}": ${(err as Error).message}`);
    }
    const location = response.headers.location;
    if (response.statusCode && response.statusCode >= 300 && response.statusCode < 400 && location) {
      response.resume();
      if (redirects >= MAX_REDIRECTS) throw new ImportError(`Unable to connect to http data source: HTTP request errored: Get "${location}": stopped after ${MAX_REDIRECTS} redirects`);
      url = new URL(location, url);
      continue;
    }
    break;
  }
  const code = response.statusCode ?? 0;
  if (code !== 200) {
    response.resume();
    throw new ImportError(`Unable to connect to http data source: expected status code 200, got ${code}. Status: ${code} ${response.statusMessage ?? ""}`.trimEnd());
  }
  const length = Number(response.headers["content-length"]);
  const total = Number.isFinite(length) && length > 0 ? length : undefined;
  let received = 0;
  opts.onProgress(0, total);
  try {
    for await (const chunk of response) {
      received += (chunk as Buffer).length;
      opts.onProgress(received, total);
    }
  } catch (err) {
    if (opts.signal.aborted) throw err;
    throw new ImportError(`Unable to transfer source data to target file: ${(err as Error).message}`);
  }
  if (total !== undefined && received < total) throw new ImportError("Unable to transfer source data to target file: unexpected EOF");
  return { bytes: received, total };
}

/** CDI's status.progress: two decimals, never 100% before the import is done, "N/A" when the size is unknown. */
export function formatProgress(received: number, total: number | undefined): string {
  if (!total) return "N/A";
  const percent = Math.min(Math.floor((received / total) * 10000) / 100, 99.99);
  return `${percent.toFixed(2)}%`;
}
