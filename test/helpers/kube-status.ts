// metav1.Status bodies exactly as a real kube-apiserver sends them, for tests that fake or check one.

/** errors.NewGenericServerResponse(422, ...): a JSON patch that does not apply (a failed `test` op included). */
export const PATCH_NOT_APPLICABLE_STATUS = {
  kind: "Status",
  apiVersion: "v1",
  metadata: {},
  status: "Failure",
  message: "the server rejected our request due to an error in our request",
  reason: "Invalid",
  details: {},
  code: 422,
} as const;
