// Probes for vi.waitFor, which retries while its callback throws and, on timeout, throws the callback's last
// error: a probe that throws an Error naming what it awaits makes that timeout say what was awaited.
//
//   const vmi = await vi.waitFor(() => present(cache.getVm(ns, name)?.vmi, `${name} running`), { timeout: 10_000 });

/** `value` once it is there (not undefined, null or false); until then throws an Error that names `what`. */
export function present<T>(value: T | undefined | null | false, what: string): T {
  if (value === undefined || value === null || value === false) throw new Error(`still waiting for ${what} (last: ${String(value)})`);
  return value;
}
