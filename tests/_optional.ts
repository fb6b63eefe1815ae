/**
 * Optional suites (interop with oidc-provider, a real Chromium) need programs that a developer
 * machine may lack. There, a test whose prerequisites are missing is skipped, with the reason in its
 * name. Where `CI` is set (`.ci/run` sets it, as CI services do), the same test fails with that
 * reason instead: CI prepares these suites (`.ci/prepare`), so a skip there means something broke.
 *
 * @module
 */

/** Whether this run is CI: `CI` is set to anything but "", "0" or "false". */
export function inCI(): boolean {
  const value = Deno.env.get("CI");
  return value !== undefined && !["", "0", "false"].includes(value.toLowerCase());
}

/**
 * The test as given when `skip` is undefined; else, outside CI, the test ignored with
 * "(skipped: REASON)" in its name; in CI, a test of the same name that fails with the reason.
 */
export function optionalTest(test: Deno.TestDefinition, skip: string | undefined): Deno.TestDefinition {
  if (skip === undefined) return test;
  if (inCI()) {
    return {
      ...test,
      ignore: false,
      fn: () => {
        throw new Error(`CI must run this test, but its suite cannot run here: ${skip}`);
      },
    };
  }
  return { ...test, name: `${test.name} (skipped: ${skip})`, ignore: true };
}
