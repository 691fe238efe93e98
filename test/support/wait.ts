/** Polls `check` until it returns a truthy value or `timeoutMs` passes. No fixed sleeps in tests: wait on conditions. */
export async function waitFor<T>(
  check: () => Promise<T> | T,
  {
    timeoutMs = 20_000,
    intervalMs = 50,
    what = "condition",
  }: { timeoutMs?: number; intervalMs?: number; what?: string } = {},
): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  let last: T | undefined;
  for (;;) {
    last = await check();
    if (last) return last as NonNullable<T>;
    if (Date.now() > deadline) throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}
