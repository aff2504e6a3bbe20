// What the informers do to every object before storing it: frozen deeply, values unchanged, equal strings taken
// from a bounded pool (the memory it saves is the bench's: `npm run bench:watcher`, cache cost per VM).
import { describe, expect, it } from "vitest";
import { StringPool, freezeSharingStrings } from "../../capabilities/common/informer";
import { withoutBookkeeping } from "../../capabilities/common/informers";
import { vm } from "../redfish/fixtures";

describe("StringPool", () => {
  it("holds each value once and forgets everything once full, so unique values cannot grow it", () => {
    const pool = new StringPool(3);
    expect(["a", "b", "a", "b"].map(s => pool.share(s))).toEqual(["a", "b", "a", "b"]);
    expect(pool.size).toBe(2);
    pool.share("c");
    expect(pool.size).toBe(3);
    // Full: a new value starts the pool again.
    expect(pool.share("d")).toBe("d");
    expect(pool.size).toBe(1);
    for (let i = 0; i < 1000; i++) pool.share(`uid-${i}`);
    expect(pool.size).toBeLessThanOrEqual(3);
  });

  it("does not hold long strings (certificates, embedded documents)", () => {
    const pool = new StringPool();
    const long = "x".repeat(257);
    expect(pool.share(long)).toBe(long);
    expect(pool.share("x".repeat(256))).toBe("x".repeat(256));
    expect(pool.size).toBe(1);
  });
});

describe("freezeSharingStrings", () => {
  it("freezes every object and array of the object and leaves every value as it was", () => {
    const obj = vm("ns1", "vm-1");
    const expected = structuredClone(obj);
    const stored = freezeSharingStrings(obj, new StringPool());
    expect(stored).toEqual(expected);
    const unfrozen: string[] = [];
    const visit = (value: unknown, at: string): void => {
      if (value === null || typeof value !== "object") return;
      if (!Object.isFrozen(value)) unfrozen.push(at);
      for (const [key, child] of Object.entries(value)) visit(child, `${at}/${key}`);
    };
    visit(stored, "");
    expect(unfrozen).toEqual([]);
    expect(() => {
      (stored.metadata as { name: string }).name = "changed";
    }).toThrow(TypeError);
  });

  it("keeps strings in arrays and leaves objects frozen elsewhere as they are", () => {
    const shared = Object.freeze({ reason: "kept" });
    const obj = { list: ["a", "b", { c: "d" }], shared };
    const stored = freezeSharingStrings(obj, new StringPool());
    expect(stored).toEqual({ list: ["a", "b", { c: "d" }], shared: { reason: "kept" } });
    expect(stored.shared).toBe(shared);
    expect(Object.isFrozen(stored.list)).toBe(true);
    expect(Object.isFrozen(stored.list[2])).toBe(true);
  });
});

describe("withoutBookkeeping", () => {
  it("drops managedFields and kubectl's last-applied copy from the informer's own object, keeping the rest", () => {
    const obj = vm("ns1", "vm-1");
    obj.metadata.managedFields = [{ manager: "kubectl" }];
    obj.metadata.annotations = { "kubectl.kubernetes.io/last-applied-configuration": "{...}", kept: "yes" };
    const expectedSpec = structuredClone(obj.spec);
    const stored = withoutBookkeeping(obj);
    // In place: a copy by object spread gave every stored object a V8 hidden class of its own once frozen.
    expect(stored).toBe(obj);
    expect(stored.metadata.managedFields).toBeUndefined();
    expect(stored.metadata.annotations).toEqual({ kept: "yes" });
    expect(stored.metadata.name).toBe("vm-1");
    expect(stored.spec).toEqual(expectedSpec);
  });
});
