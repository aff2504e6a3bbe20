import { Capability, a } from "pepr";

// No `namespaces` filter: Pepr's namespace filter silently skips cluster-scoped kinds like Node.
export const NodeIdentity = new Capability({
  name: "node-identity",
  description: "Keeps the infra VM identity annotations on nested-cluster Nodes",
});

const { When } = NodeIdentity;
When(a.Node).IsCreatedOrUpdated().Mutate(() => {});
