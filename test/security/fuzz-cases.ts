// The fuzzer's cases: every Redfish endpoint (and /healthz) crossed with malformed ids, methods, bodies, headers
// and raw protocol abuse. Deterministic (no randomness): a failure names its case and reproduces.
import { encodeRequest, type RawRequest } from "./raw-client";

export interface Slots {
  system: string;
  nic: string;
  media: string;
  chassis: string;
  session: string;
  account: string;
  task: string;
}

export interface FuzzCase {
  group: "ids" | "methods" | "bodies" | "headers" | "protocol";
  label: string;
  bytes: Buffer;
  /** Cases that fail authentication run from their own source address: their back-off must not lock the others out. */
  failsAuthentication: boolean;
  /** Why the server may close the connection without an answer (Node's documented behaviour), if it may. */
  mayCloseWithoutAnswer?: string;
}

type Slot = keyof Slots;

export const ENDPOINTS: string[] = [
  "/redfish",
  "/redfish/v1",
  "/redfish/v1/",
  "/redfish/v1/odata",
  "/redfish/v1/$metadata",
  "/redfish/v1/Systems",
  "/redfish/v1/Systems/{system}",
  "/redfish/v1/Systems/{system}/Actions/ComputerSystem.Reset",
  "/redfish/v1/Systems/{system}/EthernetInterfaces",
  "/redfish/v1/Systems/{system}/EthernetInterfaces/{nic}",
  "/redfish/v1/Systems/{system}/VirtualMedia",
  "/redfish/v1/Systems/{system}/VirtualMedia/{media}",
  "/redfish/v1/Systems/{system}/VirtualMedia/Cd/Actions/VirtualMedia.InsertMedia",
  "/redfish/v1/Systems/{system}/VirtualMedia/Cd/Actions/VirtualMedia.EjectMedia",
  "/redfish/v1/Managers",
  "/redfish/v1/Managers/{system}",
  "/redfish/v1/Managers/{system}/VirtualMedia",
  "/redfish/v1/Managers/{system}/VirtualMedia/{media}",
  "/redfish/v1/Managers/{system}/VirtualMedia/Cd/Actions/VirtualMedia.InsertMedia",
  "/redfish/v1/Managers/{system}/VirtualMedia/Cd/Actions/VirtualMedia.EjectMedia",
  "/redfish/v1/Chassis",
  "/redfish/v1/Chassis/{chassis}",
  "/redfish/v1/SessionService",
  "/redfish/v1/SessionService/Sessions",
  "/redfish/v1/SessionService/Sessions/{session}",
  "/redfish/v1/AccountService",
  "/redfish/v1/AccountService/Accounts",
  "/redfish/v1/AccountService/Accounts/{account}",
  "/redfish/v1/TaskService",
  "/redfish/v1/TaskService/Tasks",
  "/redfish/v1/TaskService/Tasks/{task}",
  "/redfish/v1/TaskService/TaskMonitors/{task}",
  "/healthz",
];

/** Ids with traversal, encodings, unicode, oversize and injection payloads (sent verbatim in the path). */
const ID_MUTATIONS: string[] = [
  "",
  ".",
  "..",
  "../..",
  "..%2F..",
  "%2e%2e",
  "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
  "....//....//etc/passwd",
  "sec-a.web/../../sec-b.web",
  "sec-b.web",
  "sec-c.lonely",
  "%00",
  "sec-a.web%00",
  "%ZZ",
  "%",
  "%C0%AE%C0%AE",
  "syst%C3%A9me",
  "%F0%9F%98%80",
  "syst\u00e9me",
  "%E2%80%AEbew.a-ces",
  "a".repeat(300),
  "a".repeat(5_000),
  "a".repeat(70_000),
  "*",
  ";",
  "web;jsessionid=x",
  "web?x=1",
  "%3Cscript%3Ealert(1)%3C%2Fscript%3E",
  "'%20OR%20'1'%3D'1",
  "$%7Bjndi:ldap://x/a%7D",
  "%7B%7B7*7%7D%7D",
  "$(id)",
  "__proto__",
  "constructor",
  "toString",
  "hasOwnProperty",
];

/** Request bodies for the endpoints that take one. */
function bodies(isoUrl: string): [string, string | Buffer][] {
  return [
    ["empty", ""],
    ["open brace", "{"],
    ["close brace", "}"],
    ["null", "null"],
    ["zero", "0"],
    ["huge number", "1e309"],
    ["true", "true"],
    ["array", "[]"],
    ["array of object", "[{}]"],
    ["string", '"str"'],
    ["empty object", "{}"],
    ["reset On", '{"ResetType":"On"}'],
    ["reset ForceOff", '{"ResetType":"ForceOff"}'],
    ["reset object", '{"ResetType":{"x":1}}'],
    ["reset null", '{"ResetType":null}'],
    ["reset 10k", `{"ResetType":"${"A".repeat(10_000)}"}`],
    ["duplicate keys", '{"ResetType":"On","ResetType":"ForceOff"}'],
    ["trailing garbage", '{"ResetType":"On"}garbage'],
    ["boot null", '{"Boot":null}'],
    ["boot array", '{"Boot":[]}'],
    ["boot target array", '{"Boot":{"BootSourceOverrideTarget":["Pxe"]}}'],
    ["boot bad enabled", '{"Boot":{"BootSourceOverrideTarget":"Pxe","BootSourceOverrideEnabled":"Sometimes"}}'],
    ["boot mode", '{"Boot":{"BootSourceOverrideMode":"Legacy"}}'],
    ["read-only property", '{"PowerState":"On"}'],
    ["image unreachable", '{"Image":"http://127.0.0.1:1/x.iso"}'],
    ["image file url", '{"Image":"file:///etc/passwd"}'],
    ["image space", '{"Image":"http://example.invalid/a b.iso"}'],
    ["image bad port", '{"Image":"http://[::1]:99999/x.iso"}'],
    ["image javascript", '{"Image":"javascript:alert(1)"}'],
    ["image shell", '{"Image":"http://host.invalid/$(reboot);`id`.iso"}'],
    ["image password object", `{"Image":"${isoUrl}","UserName":"u","Password":{}}`],
    ["image 5k", `{"Image":"http://h.invalid/${"h".repeat(5_000)}.iso"}`],
    ["image not inserted", `{"Image":"${isoUrl}","Inserted":false}`],
    ["image writable", `{"Image":"${isoUrl}","WriteProtected":false}`],
    ["image nfs", `{"Image":"${isoUrl}","TransferProtocolType":"NFS"}`],
    ["image unknown property", `{"Image":"${isoUrl}","Oem":{"x":1}}`],
    ["login password object", '{"UserName":"fuzz-nobody","Password":{}}'],
    ["login 10k username", `{"UserName":"${"u".repeat(10_000)}","Password":"p"}`],
    ["login unknown user", '{"UserName":"fuzz-nobody","Password":"nope"}'],
    ["proto pollution", '{"__proto__":{"admin":true},"Boot":{}}'],
    ["constructor pollution", '{"constructor":{"prototype":{"x":1}}}'],
    ["control characters", "\u0000\u0001\u0002"],
    ["deep arrays", `{"a":${"[".repeat(5_000)}${"]".repeat(5_000)}}`],
    ["deep objects", `${'{"a":'.repeat(3_000)}1${"}".repeat(3_000)}`],
    ["just over 64 KiB", `{"a":"${"x".repeat(64 * 1024)}"}`],
    ["1 MiB", `{"a":"${"x".repeat(1024 * 1024)}"}`],
    ["BOM", '\ufeff{"ResetType":"On"}'],
    ["UTF-16", Buffer.from('{"ResetType":"On"}', "utf16le")],
    ["invalid UTF-8", Buffer.from([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x3a, 0x31, 0x7d])],
  ];
}

const BODY_ENDPOINTS = [
  "/redfish/v1/Systems/{system}",
  "/redfish/v1/Systems/{system}/Actions/ComputerSystem.Reset",
  "/redfish/v1/Systems/{system}/VirtualMedia/Cd/Actions/VirtualMedia.InsertMedia",
  "/redfish/v1/Systems/{system}/VirtualMedia/Cd/Actions/VirtualMedia.EjectMedia",
  "/redfish/v1/Managers/{system}/VirtualMedia/Cd/Actions/VirtualMedia.InsertMedia",
  "/redfish/v1/Managers/{system}",
  "/redfish/v1/SessionService/Sessions",
];

const METHODS = ["GET", "HEAD", "POST", "PATCH", "PUT", "DELETE", "OPTIONS", "TRACE", "PROPFIND", "FOO", "M-SEARCH"];

function slotsOf(template: string): Slot[] {
  return [...template.matchAll(/\{(\w+)\}/g)].map(m => m[1] as Slot);
}

function fill(template: string, slots: Slots, override?: { slot: Slot; value: string }): string {
  return template.replace(/\{(\w+)\}/g, (_, name: Slot) => (override?.slot === name ? override.value : encodeURIComponent(slots[name])));
}

export function fuzzCases(o: { slots: Slots; authorization: string; isoUrl: string; token: string }): FuzzCase[] {
  const cases: FuzzCase[] = [];
  const auth: [string, string][] = [["Authorization", o.authorization]];
  const json: [string, string][] = [["Content-Type", "application/json"]];
  const add = (group: FuzzCase["group"], label: string, request: RawRequest | Buffer, failsAuthentication = false) =>
    cases.push({ group, label, bytes: Buffer.isBuffer(request) ? request : encodeRequest(request), failsAuthentication });

  // ids: every slot of every endpoint, mutated; GET reaches the lookup of every resource, POST its 405 or action.
  for (const template of ENDPOINTS) {
    for (const slot of slotsOf(template)) {
      for (const value of ID_MUTATIONS) {
        for (const method of ["GET", "POST"]) {
          const target = fill(template, o.slots, { slot, value });
          const body = method === "POST" ? "{}" : undefined;
          add("ids", `${method} ${template} {${slot}}=${JSON.stringify(value.slice(0, 40))}${value.length > 40 ? `...(${value.length})` : ""}`, {
            method,
            target,
            headers: [...auth, ...(body !== undefined ? json : [])],
            body,
          });
        }
      }
    }
  }

  // methods: every endpoint with every method (a small valid-looking body for the ones that carry one).
  for (const template of ENDPOINTS) {
    for (const method of METHODS) {
      const body = ["POST", "PATCH", "PUT"].includes(method) ? "{}" : undefined;
      add("methods", `${method} ${template}`, { method, target: fill(template, o.slots), headers: [...auth, ...(body !== undefined ? json : [])], body });
    }
  }

  // bodies: every body on every endpoint that takes one, with its verb (PATCH for resources, POST for actions).
  for (const template of BODY_ENDPOINTS) {
    const method = template.includes("/Actions/") || template.endsWith("/Sessions") ? "POST" : "PATCH";
    const login = template.endsWith("/Sessions");
    for (const [label, body] of bodies(o.isoUrl)) {
      add("bodies", `${method} ${template} body=${label}`, { method, target: fill(template, o.slots), headers: [...(login ? [] : auth), ...json], body }, login);
    }
    for (const contentType of ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/json; charset=utf-16", ""]) {
      add("bodies", `${method} ${template} content-type=${JSON.stringify(contentType)}`, {
        method,
        target: fill(template, o.slots),
        headers: [...(login ? [] : auth), ["Content-Type", contentType]],
        body: login ? '{"UserName":"fuzz-nobody","Password":"x"}' : "{}",
      }, login);
    }
  }

  // headers: every endpoint under malformed authentication (own source address) and odd protocol headers.
  const b64 = (s: string) => Buffer.from(s).toString("base64");
  const authHeaders: [string, [string, string][]][] = [
    ["Basic without credentials", [["Authorization", "Basic"]]],
    ["Basic padding only", [["Authorization", "Basic ====="]]],
    ["Basic without colon", [["Authorization", `Basic ${b64("alice")}`]]],
    ["Basic colon only", [["Authorization", `Basic ${b64(":")}`]]],
    ["Basic 8k", [["Authorization", `Basic ${"A".repeat(8_000)}`]]],
    ["Basic non-UTF-8", [["Authorization", `Basic ${Buffer.from([0xff, 0xfe, 0x3a, 0xff]).toString("base64")}`]]],
    ["Bearer", [["Authorization", "Bearer abc"]]],
    ["Digest", [["Authorization", 'Digest username="alice"']]],
    ["empty token", [["X-Auth-Token", ""]]],
    ["4k token", [["X-Auth-Token", "x".repeat(4_096)]]],
    ["traversal token", [["X-Auth-Token", "../../etc/passwd"]]],
    ["latin-1 token", [["X-Auth-Token", "\u00ff\u00fe"]]],
    ["token with spaces", [["X-Auth-Token", ` ${o.token} `]]],
    ["two Authorization headers", [["Authorization", "Basic Zm9vOmJhcg=="], ["Authorization", o.authorization]]],
  ];
  const otherHeaders: [string, [string, string][]][] = [
    ["If-Match garbage", [["If-Match", "garbage"]]],
    ["If-Match star", [["If-Match", "*"]]],
    ["If-None-Match star", [["If-None-Match", "*"]]],
    ["If-None-Match weak", [["If-None-Match", 'W/"x", "y"']]],
    ["OData-Version empty", [["OData-Version", ""]]],
    ["OData-Version 5", [["OData-Version", "5.0"]]],
    ["Accept xml", [["Accept", "application/xml"]]],
    ["Accept-Encoding odd", [["Accept-Encoding", "gzip, br, zstd, ;;;"]]],
    ["X-Forwarded-For garbage", [["X-Forwarded-For", "not-an-ip, ::1, 999.1.1.1"]]],
    ["Forwarded garbage", [["Forwarded", 'for=unknown;by="x']]],
    ["Host evil", [["X-Forwarded-Host", "evil.example"]]],
    ["Range", [["Range", "bytes=0-1"]]],
    ["Expect 100-continue", [["Expect", "100-continue"]]],
    ["20 KB header", [["X-Big", "b".repeat(20 * 1024)]]],
    ["200 headers", Array.from({ length: 200 }, (_, i) => [`X-H${i}`, String(i)] as [string, string])],
    ["invalid header name", [["Bad Header", "x"]]],
    ["header with CR", [["X-Injected", "a\rb"]]],
  ];
  for (const template of ENDPOINTS) {
    const target = fill(template, o.slots);
    for (const [label, headers] of authHeaders) add("headers", `GET ${template} ${label}`, { method: "GET", target, headers }, true);
    for (const [label, headers] of otherHeaders) add("headers", `GET ${template} ${label}`, { method: "GET", target, headers: [...auth, ...headers] });
  }

  // protocol: request lines and framing no client library would send.
  const system = `/redfish/v1/Systems/${encodeURIComponent(o.slots.system)}`;
  const raw = (label: string, text: string, mayCloseWithoutAnswer?: string) => {
    add("protocol", label, Buffer.from(text, "latin1"), true);
    if (mayCloseWithoutAnswer) cases[cases.length - 1].mayCloseWithoutAnswer = mayCloseWithoutAnswer;
  };
  raw("HTTP/1.0", `GET ${system} HTTP/1.0\r\nAuthorization: ${o.authorization}\r\n\r\n`);
  raw("HTTP/2.0 request line", `GET ${system} HTTP/2.0\r\nHost: localhost\r\n\r\n`);
  raw("HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
  raw("no leading slash", "GET redfish/v1/Systems HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
  raw("absolute-form", `GET https://evil.example${system} HTTP/1.1\r\nHost: localhost\r\nAuthorization: ${o.authorization}\r\nConnection: close\r\n\r\n`);
  raw("asterisk-form", "OPTIONS * HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
  raw("CONNECT", "CONNECT localhost:443 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n", "Node's HTTP server closes CONNECT requests when nothing listens for 'connect'");
  raw("NUL in path", `GET ${system}\u0000 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`);
  raw("lowercase method", `get ${system} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`);
  raw("double spaces", `GET  ${system}  HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`);
  raw("bare LF", `GET ${system} HTTP/1.1\nHost: localhost\nAuthorization: ${o.authorization}\nConnection: close\n\n`);
  raw("leading CRLFs", `\r\n\r\nGET ${system} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`);
  raw("no Host", `GET ${system} HTTP/1.1\r\nAuthorization: ${o.authorization}\r\nConnection: close\r\n\r\n`);
  raw("two Hosts", `GET ${system} HTTP/1.1\r\nHost: localhost\r\nHost: evil.example\r\nConnection: close\r\n\r\n`);
  raw("100 KB path", `GET /redfish/v1/${"p".repeat(100 * 1024)} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`);
  raw("binary garbage", Array.from({ length: 1024 }, (_, i) => String.fromCharCode((i * 131 + 7) % 256)).join(""));
  raw("header without colon", `GET ${system} HTTP/1.1\r\nHost: localhost\r\nNoColonHere\r\nConnection: close\r\n\r\n`);
  raw("obsolete line folding", `GET ${system} HTTP/1.1\r\nHost: localhost\r\nX-Folded: a\r\n b\r\nConnection: close\r\n\r\n`);
  raw("bad chunked body", `POST ${system}/Actions/ComputerSystem.Reset HTTP/1.1\r\nHost: localhost\r\nAuthorization: ${o.authorization}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\n{}\r\n0\r\n\r\n`);
  raw("chunked and Content-Length", `POST ${system}/Actions/ComputerSystem.Reset HTTP/1.1\r\nHost: localhost\r\nAuthorization: ${o.authorization}\r\nContent-Type: application/json\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n2\r\n{}\r\n0\r\n\r\n`);
  raw("negative Content-Length", `POST ${system}/Actions/ComputerSystem.Reset HTTP/1.1\r\nHost: localhost\r\nContent-Length: -1\r\nConnection: close\r\n\r\n{}`);
  raw("Content-Length longer than the body", `POST ${system}/Actions/ComputerSystem.Reset HTTP/1.1\r\nHost: localhost\r\nAuthorization: ${o.authorization}\r\nContent-Type: application/json\r\nContent-Length: 100\r\nConnection: close\r\n\r\n{}`);
  raw("pipelined requests", `GET ${system} HTTP/1.1\r\nHost: localhost\r\nAuthorization: ${o.authorization}\r\n\r\nGET /redfish/v1/ HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`);
  raw("smuggled request in body", `POST ${system}/Actions/ComputerSystem.Reset HTTP/1.1\r\nHost: localhost\r\nAuthorization: ${o.authorization}\r\nContent-Type: application/json\r\nContent-Length: 0\r\nTransfer-Encoding: identity\r\nConnection: close\r\n\r\nGET /redfish/v1/Systems/sec-b.web HTTP/1.1\r\nHost: localhost\r\n\r\n`);
  return cases;
}
