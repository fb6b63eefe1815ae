/**
 * Issue 23, the first hour: every message names the real cause and its hint is a command that works
 * when followed (each case below runs the hint against the same mock and checks that it does not fail
 * the same way); every printed address keeps working while the tool waits; a login is four lines.
 *
 * @module
 */
import { assert, assertEquals, assertMatch, assertStringIncludes } from "./assert.ts";
import { EXIT } from "../login.ts";
import { CONFIDENTIAL_CLIENT, PUBLIC_CLIENT, type ServedMock } from "./mock_issuer.ts";
import { assertNoLeaks, cleanUp, type Run, run, scriptedBrowser, secretsOf, withMock } from "./_harness.ts";

function flags(mock: ServedMock, ...extra: string[]): string[] {
  return ["--issuer", mock.issuer, "--client-id", PUBLIC_CLIENT.id, ...extra];
}

/** The `hint:` line of a run (unwrapped: the runs here have no terminal width). */
function hintOf(result: Run): string {
  return result.stderr.match(/^hint: (.*)$/m)?.[1] ?? "";
}

// ── Messages that blame the wrong thing: invalid_client ─────────────────────────────────────────

const confidential = (mock: ServedMock, ...extra: string[]) => [
  "--issuer",
  mock.issuer,
  "--client-id",
  CONFIDENTIAL_CLIENT.id,
  ...extra,
];

for (const par of [true, false]) {
  const where = par ? "at PAR" : "at the code exchange";
  Deno.test(`invalid_client ${where}: the hint says what was sent and where it came from, and following it works`, async (t) => {
    await t.step("a wrong secret from the environment", async () => {
      await withMock(async (mock) => {
        const wrong = await run(confidential(mock), {
          env: { OAUTH_CLIENT_SECRET: "not-the-secret" },
          browser: scriptedBrowser,
        });
        assertEquals(wrong.code, par ? EXIT.usage : EXIT.failure, wrong.stderr);
        assertStringIncludes(wrong.stderr, '"invalid_client" (Client authentication failed)\n');
        assertEquals(
          hintOf(wrong),
          'the client secret from OAUTH_CLIENT_SECRET in the environment was sent (client_secret_basic): check that it is the current secret of the client "cli-confidential", and the client id; a client registered for client_secret_post needs --client-auth client_secret_post',
        );
        assert(!wrong.stderr.includes("redirect URI"), "the redirect URI is not what the server refused");
        assertNoLeaks(wrong, ["not-the-secret"]);
        // Following it: the client's current secret.
        const right = await run(confidential(mock), {
          env: { OAUTH_CLIENT_SECRET: CONFIDENTIAL_CLIENT.secret! },
          browser: scriptedBrowser,
        });
        assertEquals(right.code, EXIT.ok, right.stderr);
        await cleanUp(wrong);
        await cleanUp(right);
      }, { par });
    });
    await t.step("a confidential client with no secret set", async () => {
      await withMock(async (mock) => {
        const none = await run(confidential(mock), { browser: scriptedBrowser });
        assertEquals(none.code, par ? EXIT.usage : EXIT.failure, none.stderr);
        assertEquals(
          hintOf(none),
          'check that the client id "cli-confidential" exists at the server; no client secret was sent (client authentication "none"), so if the client is confidential, set OAUTH_CLIENT_SECRET to its secret',
        );
        const followed = await run(confidential(mock), {
          env: { OAUTH_CLIENT_SECRET: CONFIDENTIAL_CLIENT.secret! },
          browser: scriptedBrowser,
        });
        assertEquals(followed.code, EXIT.ok, followed.stderr);
        await cleanUp(none);
        await cleanUp(followed);
      }, { par });
    });
    await t.step("--client-auth none with a secret in the environment", async () => {
      await withMock(async (mock) => {
        const env = { OAUTH_CLIENT_SECRET: CONFIDENTIAL_CLIENT.secret! };
        const dropped = await run(confidential(mock, "--client-auth", "none"), { env, browser: scriptedBrowser });
        assertEquals(dropped.code, par ? EXIT.usage : EXIT.failure, dropped.stderr);
        assertEquals(
          hintOf(dropped),
          'no client secret was sent: --client-auth says "none", so OAUTH_CLIENT_SECRET in the environment was left out; drop --client-auth none to send it',
        );
        const followed = await run(confidential(mock), { env, browser: scriptedBrowser });
        assertEquals(followed.code, EXIT.ok, followed.stderr);
        await cleanUp(dropped);
        await cleanUp(followed);
      }, { par });
    });
  });
}
