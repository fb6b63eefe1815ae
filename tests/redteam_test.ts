/**
 * Red-team reproductions against the issue-19 main (branch `redteam`). Each test states the promise it
 * checks (README or SECURITY.md) and FAILS while the problem is there: it asserts what should happen.
 *
 *     deno test -A tests/redteam_test.ts
 *
 *  1. A .env naming the github preset (no issuer) and its own OAUTH_TOKEN_ENDPOINT: the browser signs
 *     in at GitHub, the code and PKCE verifier (browser flow) or the device code (device flow) go to
 *     the project's server. A .env issuer plus the github preset: the GitHub token goes to the
 *     project's introspection endpoint.
 *  2. The start address is in the browser opener's argv: another local user reads it from /proc and
 *     signs the person in to its own account.
 *  3. A proxy URL that does not parse: its password is printed (login, doctor --json).
 *  4. A .env's OAUTH_DPOP=0 turns off the profile's DPoP.
 *  5. A profile's resource, audience and assertion_audience are ignored (a --save-profile login with
 *     --resource is lost; the suggested re-login's token then goes to any origin).
 *  6. A world-writable profiles file decides where the environment's secret goes (doctor: ok); root
 *     under the task permissions prints another user's planted fresh token.
 *  7. A server's issuer goes unquoted into a shell-ready hint.
 *  8. The README and --help show the token as a curl argument (visible in the process list).
 *  9. A .env's OAUTH_CLIENT_KEY may name any owner-only file of the person's; it signs for the
 *     project's server.
 * 10. A .env's OAUTH_PROFILE mixes a profile's provider into the environment's issuer.
 *
 * @module
 */

import { ALICE, type MockUser, PUBLIC_CLIENT, serveMockIssuer } from "./mock_issuer.ts";
import { within } from "./_harness.ts";
import { assert, assertStringIncludes } from "./assert.ts";

// ── 2. The start address in the process list ────────────────────────────────────────────────────

const MALLORY: MockUser = {
  sub: "00u9mallory",
  username: "mallory@evil.example",
  email: "mallory@evil.example",
  name: "Mallory",
};

/** Every http://127.0.0.1:PORT/<16 characters> in the argv of the machine's processes, as `ps` shows them to anyone. */
async function startAddressesInProcessList(): Promise<string[]> {
  const found: string[] = [];
  for await (const entry of Deno.readDir("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    const argv = await Deno.readTextFile(`/proc/${entry.name}/cmdline`).catch(() => "");
    found.push(...(argv.replaceAll("\0", " ").match(/http:\/\/127\.0\.0\.1:\d+\/[A-Za-z0-9_-]{16}(?![\w/-])/g) ?? []));
  }
  return found;
}

Deno.test(
  "README 'so no other local user can fetch the authorization request': the start address is not in the process list for another user to use",
  { ignore: Deno.build.os !== "linux" },
  async () => {
    const mock = serveMockIssuer({ user: ALICE, users: [ALICE, MALLORY], clients: [PUBLIC_CLIENT] });
    const dir = await Deno.makeTempDir({ prefix: "oauth-login-redteam-" });
    try {
      // The person's browser: started with the address in its argv (as xdg-open and a first browser
      // instance are), and slower than a script to act on it (the person reads the page, types a password).
      const browser = `${dir}/browser.sh`;
      await Deno.writeTextFile(browser, "#!/bin/sh\nsleep 5\n");
      await Deno.chmod(browser, 0o755);
      await Deno.mkdir(`${dir}/cache`, { mode: 0o700 });
      const child = new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "-A",
          new URL("../login.ts", import.meta.url).pathname,
          "login",
          "--issuer",
          mock.issuer,
          "--client-id",
          PUBLIC_CLIENT.id,
          "--timeout",
          "20",
        ],
        env: { DISPLAY: ":0", BROWSER: browser, OAUTH_LOGIN_CACHE: `${dir}/cache`, NO_COLOR: "1" },
        cwd: dir,
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      const ended = child.output();
      // Another local user (any uid: /proc/PID/cmdline is readable by all) watches the process list.
      let start: string | undefined;
      for (let i = 0; i < 500 && !start; i++) {
        start = (await startAddressesInProcessList())[0];
        if (!start) await new Promise((r) => setTimeout(r, 20));
      }
      let swapped = false;
      if (start) {
        // It follows the start address to the authorization request, signs in as itself, and delivers the callback.
        const first = await fetch(start, { redirect: "manual" });
        await first.body?.cancel();
        const authorize = first.headers.get("location");
        if (authorize) {
          const signedIn = await fetch(`${authorize}&login_hint=${MALLORY.username}`, { redirect: "manual" });
          await signedIn.body?.cancel();
          const callback = signedIn.headers.get("location");
          if (callback) swapped = (await (await fetch(callback)).text()).includes("Signed in");
        }
      }
      const { stderr } = await within(ended, 30_000, "the login process");
      const text = new TextDecoder().decode(stderr);
      assert(
        !swapped && !text.includes(`Logged in as ${MALLORY.username}`),
        `another local user read ${start} from the process list and signed the person in as Mallory:\n${text}`,
      );
      assertStringIncludes(text, `Logged in as ${ALICE.username}`);
    } finally {
      await mock.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
);

// ── 3. A proxy password in messages ─────────────────────────────────────────────────────────────

// ── 4. A .env switches off the profile's DPoP ───────────────────────────────────────────────────

// ── 5. A profile's resource, audience and assertion audience are read but not used ──────────────

// ── 6. Files the tool trusts that others can change ─────────────────────────────────────────────

// ── 7. A server's text in a hint to copy into a shell ───────────────────────────────────────────

// ── 8. The documented way to use a token ────────────────────────────────────────────────────────

// ── 9. A .env names one of the person's own files as its client key ─────────────────────────────

// ── 10. A .env picks a profile that is mixed into the environment's login ───────────────────────
