// The image URL policy (redfish/url-policy.ts): every spelling of issue #12 (1), the default-denied ranges and
// names, resolution of every address, the allow-lists and the lab opt-out.
import { describe, expect, it } from "vitest";
import { checkImageUrl, imageUrlPolicySchema, type Resolver, type UrlPolicyResult } from "../../redfish/url-policy";

const defaults = imageUrlPolicySchema.parse({});

/** A resolver with fixed answers; a name it does not know fails like getaddrinfo does. */
function fakeDns(answers: Record<string, string[]>): Resolver & { asked: string[] } {
  const asked: string[] = [];
  const resolver = async (host: string) => {
    asked.push(host);
    const found = answers[host];
    if (!found) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: "ENOTFOUND" });
    return found;
  };
  return Object.assign(resolver, { asked });
}

const publicDns = fakeDns({ "images.example.com": ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"] });

function refusedBy(result: UrlPolicyResult): string {
  if (result.ok) throw new Error(`expected a refusal, got ${result.url}`);
  expect(result.message).toContain(`rule ${result.rule}`);
  return result.rule;
}

describe("checkImageUrl", () => {
  it("accepts a public https URL and returns the normalised form to store", async () => {
    const result = await checkImageUrl("HTTPS://Images.Example.COM:443/a/../boot.iso?x=1", defaults, publicDns);
    expect(result).toEqual({ ok: true, url: "https://images.example.com/boot.iso?x=1" });
  });

  it.each([
    ["http://2130706433/", "decimal"],
    ["http://0x7f000001/", "hex"],
    ["http://017700000001/", "octal"],
    ["http://127.1/", "short form"],
    ["http://0x7f.0.0.1/", "hex part"],
    ["http://127.000.000.001/", "leading zeros"],
    ["http://127.0.0.1./", "trailing dot"],
    ["http://%31%32%37.0.0.1/", "percent-encoded"],
    ["http://\uff11\uff12\uff17.0.0.1/", "full-width digits"],
    ["http://0X7F000001:8080/x", "upper-case hex with a port"],
    ["http://8.8.2056/", "short form of a public address"],
  ])("refuses the non-canonical IPv4 spelling %s (%s) whatever it points at", async url => {
    const result = await checkImageUrl(url, { ...defaults, allowAllDestinations: true }, publicDns);
    expect(refusedBy(result)).toBe("non-canonical-ipv4");
  });

  it.each([
    ["http://127.0.0.1/x.iso", "loopback"],
    ["http://[::1]/x.iso", "loopback"],
    ["http://169.254.169.254/latest/meta-data/", "link-local"],
    ["http://[fe80::1]/", "link-local"],
    ["http://10.0.0.5/", "private"],
    ["http://172.16.3.4/", "private"],
    ["http://192.168.1.1/", "private"],
    ["http://100.64.0.1/", "cgnat"],
    ["http://100.100.100.200/", "cgnat"],
    ["http://[fd00:ec2::254]/", "unique-local"],
    ["http://[::ffff:127.0.0.1]/", "ipv4-mapped"],
    ["http://[::ffff:7f00:1]/", "ipv4-mapped"],
    ["http://[::ffff:169.254.169.254]/", "ipv4-mapped"],
    ["http://[64:ff9b::a9fe:a9fe]/", "ipv4-mapped"],
    ["http://[::127.0.0.1]/", "ipv4-mapped"],
    ["http://0.0.0.0/", "reserved"],
    ["http://255.255.255.255/", "reserved"],
    ["http://[ff02::1]/", "reserved"],
  ])("refuses %s by default (rule %s)", async (url, rule) => {
    const result = await checkImageUrl(url, defaults, publicDns);
    expect(refusedBy(result)).toBe(rule);
    expect(publicDns.asked).not.toContain(new URL(url).hostname);
  });

  it.each([
    ["http://metadata.google.internal/computeMetadata/v1/", "metadata-name"],
    ["http://metadata.google.internal./computeMetadata/v1/", "metadata-name"],
    ["http://METADATA.GOOGLE.INTERNAL/", "metadata-name"],
    ["http://instance-data/latest/", "metadata-name"],
    ["http://kubernetes.default.svc/api", "cluster-name"],
    ["http://kubernetes.default.svc./api", "cluster-name"],
    ["http://minio.storage.svc.cluster.local:9000/iso", "cluster-name"],
    ["http://cluster.local/", "cluster-name"],
    ["http://minio/iso", "cluster-name"],
    ["http://localhost:8080/", "loopback"],
    ["http://app.localhost/", "loopback"],
  ])("refuses the host name of %s without resolving it (rule %s)", async (url, rule) => {
    const dns = fakeDns({});
    expect(refusedBy(await checkImageUrl(url, defaults, dns))).toBe(rule);
    expect(dns.asked).toEqual([]);
  });

  it("uses the configured cluster domain", async () => {
    const config = imageUrlPolicySchema.parse({ clusterDomain: "corp.example" });
    expect(refusedBy(await checkImageUrl("http://minio.storage.svc.corp.example/x", config, fakeDns({})))).toBe("cluster-name");
  });

  it("resolves a host name and refuses it when ANY of its addresses is denied", async () => {
    const dns = fakeDns({
      "mixed.example.com": ["93.184.215.14", "10.1.2.3"],
      "v6.example.com": ["2606:2800:21f:cb07::1", "fd00:ec2::254"],
      "rebind.example.com": ["169.254.169.254"],
      "mapped.example.com": ["::ffff:127.0.0.1"],
    });
    const mixed = await checkImageUrl("https://mixed.example.com/x.iso", defaults, dns);
    expect(refusedBy(mixed)).toBe("private");
    expect(mixed.ok || mixed.message).toContain("resolves to 10.1.2.3");
    expect(refusedBy(await checkImageUrl("https://v6.example.com/x.iso", defaults, dns))).toBe("unique-local");
    expect(refusedBy(await checkImageUrl("https://rebind.example.com/x.iso", defaults, dns))).toBe("link-local");
    expect(refusedBy(await checkImageUrl("https://mapped.example.com/x.iso", defaults, dns))).toBe("ipv4-mapped");
    expect(dns.asked).toEqual(["mixed.example.com", "v6.example.com", "rebind.example.com", "mapped.example.com"]);
  });

  it("refuses names that do not resolve, resolve to nothing, or take too long", async () => {
    expect(refusedBy(await checkImageUrl("https://nowhere.example.com/", defaults, fakeDns({})))).toBe("dns");
    expect(refusedBy(await checkImageUrl("https://empty.example.com/", defaults, fakeDns({ "empty.example.com": [] })))).toBe("dns");
    const slow: Resolver = () => new Promise(() => undefined);
    const started = Date.now();
    const result = await checkImageUrl("https://slow.example.com/", { ...defaults, resolveTimeoutMs: 100 }, slow);
    expect(refusedBy(result)).toBe("dns");
    expect(Date.now() - started).toBeLessThan(5000);
  });

  it("refuses the configured Service CIDR and extra denied ranges, directly and through DNS", async () => {
    const config = imageUrlPolicySchema.parse({ serviceCidrs: ["172.30.0.0/16", "fd02::/112"], denyCidrs: ["203.0.113.0/24"] });
    const dns = fakeDns({ "kubernetes.default": ["172.30.0.1"] });
    expect(refusedBy(await checkImageUrl("https://kubernetes.default/api", config, dns))).toBe("service-cidr");
    expect(refusedBy(await checkImageUrl("https://[fd02::1]/", config, dns))).toBe("service-cidr");
    expect(refusedBy(await checkImageUrl("https://203.0.113.9/", config, dns))).toBe("denied-cidr");
  });

  it("allows listed CIDRs and hosts, and nothing else of the denied ranges", async () => {
    const config = imageUrlPolicySchema.parse({ allowCidrs: ["10.20.0.0/16"], allowHosts: ["mirror.lab.internal", "*.images.corp"] });
    const dns = fakeDns({ "other.lab.internal": ["10.30.0.4"] });
    expect(await checkImageUrl("http://10.20.0.5/x.iso", config, dns)).toEqual({ ok: true, url: "http://10.20.0.5/x.iso" });
    expect(refusedBy(await checkImageUrl("http://10.21.0.5/x.iso", config, dns))).toBe("private");
    expect(await checkImageUrl("http://mirror.lab.internal/x.iso", config, dns)).toEqual({ ok: true, url: "http://mirror.lab.internal/x.iso" });
    expect(await checkImageUrl("http://eu.images.corp/x.iso", config, dns)).toEqual({ ok: true, url: "http://eu.images.corp/x.iso" });
    expect(refusedBy(await checkImageUrl("http://images.corp.evil.com/x.iso", config, dns))).toBe("dns");
    expect(refusedBy(await checkImageUrl("http://other.lab.internal/x.iso", config, dns))).toBe("private");
    expect(dns.asked).toEqual(["images.corp.evil.com", "other.lab.internal"]);
  });

  it("an IPv6 allow range does not open IPv4 addresses (and the other way round)", async () => {
    const config = imageUrlPolicySchema.parse({ allowCidrs: ["::/0"] });
    expect(refusedBy(await checkImageUrl("http://127.0.0.1/", config, publicDns))).toBe("loopback");
    expect((await checkImageUrl("http://[fd00:ec2::254]/", config, publicDns)).ok).toBe(true);
  });

  it("the lab opt-out allows every destination but still normalises and refuses odd spellings", async () => {
    const lab = imageUrlPolicySchema.parse({ allowAllDestinations: true });
    const dns = fakeDns({});
    expect(await checkImageUrl("http://127.0.0.1:8080/a b.iso", lab, dns)).toEqual({ ok: true, url: "http://127.0.0.1:8080/a%20b.iso" });
    expect(await checkImageUrl("http://minio.storage.svc/x", lab, dns)).toEqual({ ok: true, url: "http://minio.storage.svc/x" });
    expect(refusedBy(await checkImageUrl("http://127.1/", lab, dns))).toBe("non-canonical-ipv4");
    expect(dns.asked).toEqual([]);
  });

  it.each([
    ["not a url", "url-syntax"],
    ["/relative/path.iso", "url-syntax"],
    ["http://[::1/", "url-syntax"],
    [`https://images.example.com/${"a".repeat(5000)}`, "url-syntax"],
    ["ftp://images.example.com/x.iso", "scheme"],
    ["file:///etc/passwd", "scheme"],
    ["gopher://127.0.0.1:6379/_", "scheme"],
  ])("refuses %s (rule %s)", async (url, rule) => {
    expect(refusedBy(await checkImageUrl(url, defaults, publicDns))).toBe(rule);
  });

  it("checks the host WHATWG sees, which is the host that is stored (backslashes, user info)", async () => {
    const dns = fakeDns({ "images.example.com": ["93.184.215.14"] });
    // Go's net/url would read 127.0.0.1 out of the raw string; the stored form leaves it no choice.
    expect(await checkImageUrl("http://images.example.com\\@127.0.0.1/", defaults, dns)).toEqual({ ok: true, url: "http://images.example.com/@127.0.0.1/" });
    const withUser = await checkImageUrl("http://127.0.0.1@images.example.com/x.iso", defaults, dns);
    expect(withUser).toEqual({ ok: true, url: "http://127.0.0.1@images.example.com/x.iso" });
  });
});

describe("imageUrlPolicySchema", () => {
  it("names the field of a bad range or host", () => {
    const result = imageUrlPolicySchema.safeParse({ allowCidrs: ["10.0.0.0/33"], allowHosts: ["Bad_Host"], denyCidrs: ["example.com"] });
    expect(result.success).toBe(false);
    const paths = result.error?.issues.map(i => i.path.join(".")) ?? [];
    expect(paths).toEqual(expect.arrayContaining(["allowCidrs.0", "allowHosts.0", "denyCidrs.0"]));
  });

  it("rejects unknown keys", () => {
    expect(imageUrlPolicySchema.safeParse({ allowCIDRs: [] }).success).toBe(false);
  });
});
