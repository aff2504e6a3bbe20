// JSON patch building blocks for VirtualMachine writes. Each write carries `test` ops on the values it was
// computed from, so a VM changed meanwhile makes the patch fail (and be recomputed) instead of being clobbered.
import type { JsonPatchOp } from "../kubevirt/driver";
import type { KubeObject } from "../cache/types";
import { runFieldOf, type RunStrategy } from "./vm-model";

/** RFC 6901 escaping of one path segment (annotation keys contain "/"). */
export function pointerSegment(segment: string): string {
  return segment.replace(/~/g, "~0").replace(/\//g, "~1");
}

/**
 * A test of the whole VM's resourceVersion: for writes whose invariant spans several fields (boot orders are unique
 * across the disks AND interfaces lists; the media drive's disk and volume), where testing only the fields written
 * would let a concurrent change of the others through.
 */
export function resourceVersionTest(vm: Readonly<KubeObject>): JsonPatchOp {
  const rv = vm.metadata.resourceVersion;
  if (!rv) throw new Error("the VM has no resourceVersion");
  return { op: "test", path: "/metadata/resourceVersion", value: rv };
}

export function setAnnotationOps(vm: Readonly<KubeObject>, key: string, value: string): JsonPatchOp[] {
  const annotations = vm.metadata.annotations;
  if (!annotations) return [{ op: "add", path: "/metadata/annotations", value: { [key]: value } }];
  const path = `/metadata/annotations/${pointerSegment(key)}`;
  const current = annotations[key];
  if (typeof current === "string") {
    return [
      { op: "test", path, value: current },
      { op: "replace", path, value },
    ];
  }
  return [{ op: "add", path, value }];
}

/** Removes the annotation if the VM (as read) has it; the test makes sure it is still the value we acted on. */
export function removeAnnotationOps(vm: Readonly<KubeObject>, key: string): JsonPatchOp[] {
  const current = vm.metadata.annotations?.[key];
  if (typeof current !== "string") return [];
  const path = `/metadata/annotations/${pointerSegment(key)}`;
  return [
    { op: "test", path, value: current },
    { op: "remove", path },
  ];
}

/**
 * Sets the VM's run strategy without ever leaving both `running` and `runStrategy` set: a VM on the deprecated
 * `spec.running` keeps that field when it can express the target (Always = true, Halted = false) and is moved
 * to `runStrategy` in the same patch otherwise.
 */
export function setRunStrategyOps(vm: Readonly<KubeObject>, target: RunStrategy): JsonPatchOp[] {
  const run = runFieldOf(vm);
  switch (run.field) {
    case "runStrategy":
      if (run.value === target) return [];
      return [
        { op: "test", path: "/spec/runStrategy", value: run.value },
        { op: "replace", path: "/spec/runStrategy", value: target },
      ];
    case "running":
      if (target === "Always" || target === "Halted") {
        const running = target === "Always";
        if (run.value === running) return [];
        return [
          { op: "test", path: "/spec/running", value: run.value },
          { op: "replace", path: "/spec/running", value: running },
        ];
      }
      return [
        { op: "test", path: "/spec/running", value: run.value },
        { op: "remove", path: "/spec/running" },
        { op: "add", path: "/spec/runStrategy", value: target },
      ];
    case "none":
      return [{ op: "add", path: "/spec/runStrategy", value: target }];
  }
}
