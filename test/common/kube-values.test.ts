import { describe, expect, it } from "vitest";
import { labelSelectorMatches, parseLabelList, quantityToBytes, tryParseLabelList } from "../../capabilities/common/kube-values";

describe("quantities", () => {
  it("quantityToBytes reads binary, decimal and exponent suffixes", () => {
    expect(quantityToBytes("10Gi")).toBe(10 * 2 ** 30);
    expect(quantityToBytes("500M")).toBe(500e6);
    expect(quantityToBytes("1.5Ki")).toBe(1536);
    expect(quantityToBytes("1e9")).toBe(1e9);
    expect(quantityToBytes("10GB")).toBeNaN();
  });
});

describe("labels in the CSI driver's format", () => {
  it("parses key=value lists exactly like the driver", () => {
    expect(parseLabelList("csi-driver/cluster=tenant1,tier=gold")).toEqual({ "csi-driver/cluster": "tenant1", tier: "gold" });
    expect(parseLabelList("")).toEqual({});
    expect(parseLabelList("empty=")).toEqual({ empty: "" });
    // Split at the first "=" like the driver; the rest is the value and must be a valid label value.
    expect(() => parseLabelList("a=b=c")).toThrow('labels: label "a" has an invalid value "b=c"');
  });

  it("errors name the field and the broken entry", () => {
    expect(() => parseLabelList("a=b,c", "infra.labels")).toThrow('infra.labels: entry 2 ("c") is not key=value; the format is "key=value,key=value"');
    expect(() => parseLabelList("a=b, c=d", "infra.labels")).toThrow('infra.labels: label key " c" is not a valid Kubernetes label key');
    expect(() => parseLabelList("a=b,a=c", "x")).toThrow('x: label "a" is given twice');
    expect(() => parseLabelList("a=b,", "x")).toThrow('x: entry 2 ("") is not key=value');
    expect(() => parseLabelList("a=b c", "x")).toThrow('x: label "a" has an invalid value "b c"');
    expect(() => parseLabelList("Example.com/a=b", "x")).toThrow('x: label key "Example.com/a" has an invalid prefix');
    expect(tryParseLabelList("a/b/c=d")).toEqual({ ok: false, problem: 'label key "a/b/c" has more than one "/"' });
  });
});

describe("label selectors", () => {
  it("labelSelectorMatches implements matchLabels and matchExpressions", () => {
    const vm = { redfish: "true", tier: "gold" };
    expect(labelSelectorMatches(undefined, vm)).toBe(true);
    expect(labelSelectorMatches({ matchLabels: { redfish: "true" } }, vm)).toBe(true);
    expect(labelSelectorMatches({ matchLabels: { redfish: "false" } }, vm)).toBe(false);
    expect(labelSelectorMatches({ matchExpressions: [{ key: "tier", operator: "In", values: ["gold", "silver"] }] }, vm)).toBe(true);
    expect(labelSelectorMatches({ matchExpressions: [{ key: "tier", operator: "NotIn", values: ["gold"] }] }, vm)).toBe(false);
    expect(labelSelectorMatches({ matchExpressions: [{ key: "gpu", operator: "Exists" }] }, vm)).toBe(false);
    expect(labelSelectorMatches({ matchExpressions: [{ key: "gpu", operator: "DoesNotExist" }] }, vm)).toBe(true);
    expect(labelSelectorMatches({ matchLabels: { redfish: "true" } }, undefined)).toBe(false);
  });
});
