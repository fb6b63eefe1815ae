/**
 * Regressions for the bugs of issue 10 (section 2), each reproduced as the person met it, and the
 * single-file run of section 4: login.ts copied alone into an empty folder logs in.
 *
 *     deno test --allow-net --allow-env --allow-read --allow-write --allow-run tests/regressions_test.ts
 *
 * @module
 */
import { assert, assertEquals, assertStringIncludes } from "./assert.ts";
import { EXIT, type TokenSet } from "../login.ts";
import { CONFIDENTIAL_CLIENT, type MockClient, PUBLIC_CLIENT, type ServedMock } from "./mock_issuer.ts";
import { cleanUp, type Run, run, type RunOptions, scriptedBrowser, withMock } from "./_harness.ts";

// ── Shared ──────────────────────────────────────────────────────────────────────────────────────

function flags(mock: ServedMock, client: MockClient = PUBLIC_CLIENT, ...extra: string[]): string[] {
  return ["--issuer", mock.issuer, "--client-id", client.id, ...extra];
}

/** The one cache entry a run left in its home. */
async function entryOf(result: Run): Promise<{ path: string; entry: TokenSet }> {
  const dir = `${result.home}/cache`;
  const names: string[] = [];
  for await (const file of Deno.readDir(dir)) if (file.name.endsWith(".json")) names.push(file.name);
  assertEquals(names.length, 1, `one cache entry in ${dir}`);
  const path = `${dir}/${names[0]}`;
  return { path, entry: JSON.parse(await Deno.readTextFile(path)) };
}

/** A clock the test moves. */
function clock(start = Date.now()): { now: number; read: () => number } {
  const c = { now: start, read: () => c.now };
  return c;
}

// ── Bug 1: refresh uses the client authentication the entry was stored with ────────────────────

/** A confidential client registered for client_secret_post only; the mock's metadata lists basic first. */
const POST_CLIENT: MockClient = {
  id: "cli-post",
  secret: "post-secret-value-for-tests",
  auth: "client_secret_post",
  redirectUris: ["http://127.0.0.1/callback"],
};

Deno.test("bug 1: token refreshes with the client authentication the login used, not the metadata's first", async (t) => {
  const cases: [string, string[], RunOptions][] = [
    ["--client-auth client_secret_post", ["--client-auth", "client_secret_post"], {}],
    ["OAUTH_CLIENT_AUTH in the environment", [], { env: { OAUTH_CLIENT_AUTH: "client_secret_post" } }],
    ["OAUTH_CLIENT_AUTH in .env", [], { files: { ".env": { OAUTH_CLIENT_AUTH: "client_secret_post" } } }],
  ];
  for (const [name, extra, options] of cases) {
    await t.step(name, async () => {
      await withMock(async (mock) => {
        assertEquals(
          (mock.metadata.token_endpoint_auth_methods_supported as string[] | undefined)?.[0] ?? "client_secret_basic",
          "client_secret_basic",
        );
        const time = clock();
        const env = { OAUTH_CLIENT_SECRET: POST_CLIENT.secret!, ...options.env };
        const login = await run(["login", ...flags(mock, POST_CLIENT), ...extra], {
          ...options,
          env,
          browser: scriptedBrowser,
          now: time.read,
        });
        try {
          assertEquals(login.code, EXIT.ok, login.stderr);
          assertEquals(mock.calls("token").map((r) => r.clientAuth), ["client_secret_post"]);
          assertEquals((await entryOf(login)).entry.authMethod, "client_secret_post");

          // An hour later the access token has expired: `token` refreshes, with no --client-auth given.
          time.now += 3600_000;
          const token = await run(["token", ...flags(mock, POST_CLIENT)], {
            home: login.home,
            env: { OAUTH_CLIENT_SECRET: POST_CLIENT.secret! },
            now: time.read,
          });
          assertEquals(token.code, EXIT.ok, token.stderr);
          assertEquals(token.stderr, "");
          const refresh = mock.calls("token").filter((r) => r.form.grant_type === "refresh_token");
          assertEquals(refresh.map((r) => r.clientAuth), ["client_secret_post"]);
          assertEquals(refresh[0].headers.authorization, undefined, "no Basic header");
          const printed = token.stdout.trim();
          assert(mock.accessTokens.has(printed), "the refreshed token is valid at the server");
          assertEquals((await entryOf(token)).entry.accessToken, printed);
          assertEquals((await entryOf(token)).entry.authMethod, "client_secret_post");

          // logout revokes with the same method.
          const logout = await run(["logout", ...flags(mock, POST_CLIENT)], {
            home: login.home,
            env: { OAUTH_CLIENT_SECRET: POST_CLIENT.secret! },
            now: time.read,
          });
          assertEquals(logout.code, EXIT.ok, logout.stderr);
          assertEquals(mock.calls("revoke").map((r) => r.clientAuth), ["client_secret_post", "client_secret_post"]);
          assertEquals(mock.revoked.length, 2);
        } finally {
          await cleanUp(login);
        }
      }, { clients: [POST_CLIENT, PUBLIC_CLIENT] });
    });
  }
});

Deno.test("bug 1: a client secret configured after a public login is used on refresh, as the metadata says", async () => {
  // The entry says "none", but a secret is configured now (the client became confidential): the
  // method comes from the metadata again, as at a login, instead of sending no authentication.
  const becoming: MockClient = { ...CONFIDENTIAL_CLIENT, id: "cli-becoming", auth: "none", secret: undefined };
  await withMock(async (mock) => {
    const time = clock();
    const login = await run(["login", ...flags(mock, becoming)], { browser: scriptedBrowser, now: time.read });
    try {
      assertEquals(login.code, EXIT.ok, login.stderr);
      assertEquals((await entryOf(login)).entry.authMethod, "none");
      becoming.auth = "client_secret_basic";
      becoming.secret = "now-a-confidential-client";
      time.now += 3600_000;
      const token = await run(["token", ...flags(mock, becoming)], {
        home: login.home,
        env: { OAUTH_CLIENT_SECRET: becoming.secret },
        now: time.read,
      });
      assertEquals(token.code, EXIT.ok, token.stderr);
      const refresh = mock.calls("token").filter((r) => r.form.grant_type === "refresh_token");
      assertEquals(refresh.map((r) => r.clientAuth), ["client_secret_basic"]);
    } finally {
      await cleanUp(login);
    }
  }, { clients: [becoming] });
});

Deno.test("bug 1: OAUTH_CLIENT_AUTH with an unknown method is a usage error naming the variable", async () => {
  const result = await run(["token", "--issuer", "https://a.example", "--client-id", "x"], {
    env: { OAUTH_CLIENT_AUTH: "magic" },
  });
  try {
    assertEquals(result.code, EXIT.usage);
    assertEquals(
      result.stderr,
      'error: The client authentication "magic" is not supported\n' +
        "hint: set OAUTH_CLIENT_AUTH to one of none, client_secret_basic, client_secret_post\n",
    );
    assertEquals(result.stdout, "");
  } finally {
    await cleanUp(result);
  }
});

// ── Bug 6: every numeric flag's message states the rule it enforces ─────────────────────────────

/** Runs `login` with one flag value against an issuer that cannot be reached: only parsing matters. */
async function parse(flag: string, value: string, command = "login"): Promise<Run> {
  // An issuer on a closed port: a value that passes parsing fails later with exit 1 (network).
  const result = await run([command, "--issuer", "http://127.0.0.1:9/never", "--client-id", "x", `${flag}=${value}`], {
    fetch: () => Promise.reject(new TypeError("not reachable in this test")),
  });
  await cleanUp(result);
  return result;
}

Deno.test("bug 6: --timeout, --min-ttl and --port refuse exactly the values their messages name", async (t) => {
  const timeout =
    "is not a number of seconds above 0 and at most 2147483\nhint: give the seconds to wait for the browser, e.g. --timeout 600\n";
  for (const value of ["0", "0.0", "2147483.001", "2147484", "-1", "soon", "1e3"]) {
    await t.step(`--timeout ${value} is refused`, async () => {
      const result = await parse("--timeout", `${value}`);
      assertEquals(result.code, EXIT.usage);
      assertEquals(result.stderr, `error: The timeout "${value}" ${timeout}`);
    });
  }
  for (const value of ["0.001", "1", "2147483"]) {
    await t.step(`--timeout ${value} is accepted`, async () => {
      const result = await parse("--timeout", value);
      assertEquals(result.code, EXIT.failure, result.stderr);
      assert(!result.stderr.includes("timeout"), result.stderr);
    });
  }
  const minTtl =
    "is not a number of seconds, 0 or more\nhint: give the seconds of life the token must have left, e.g. --min-ttl 300 (0: only when expired)\n";
  for (const value of ["-1", "soon", "1e3"]) {
    await t.step(`--min-ttl ${value} is refused`, async () => {
      const result = await parse("--min-ttl", value, "token");
      assertEquals(result.code, EXIT.usage);
      assertEquals(result.stderr, `error: The minimum lifetime "${value}" ${minTtl}`);
    });
  }
  for (const value of ["0", "0.5", "86400"]) {
    await t.step(`--min-ttl ${value} is accepted`, async () => {
      const result = await parse("--min-ttl", value, "token");
      assertEquals(result.code, EXIT.loginRequired, result.stderr); // nothing cached, nobody to ask
    });
  }
  for (const value of ["65536", "http", "1.5"]) {
    await t.step(`--port ${value} is refused`, async () => {
      const result = await parse("--port", value);
      assertEquals(result.code, EXIT.usage);
      assertStringIncludes(result.stderr, `error: The port "${value}" is not a number from 1 to 65535\n`);
    });
  }
  for (const value of ["1", "65535"]) {
    await t.step(`--port ${value} is accepted`, async () => {
      const result = await parse("--port", value);
      assertEquals(result.code, EXIT.failure, result.stderr);
      assert(!result.stderr.includes("port"), result.stderr);
    });
  }
});

// ── Bug 4: logout revokes the tokens of an entry others could read ──────────────────────────────

Deno.test("bug 4: logout of an entry other users can read revokes its tokens, then removes it", async () => {
  await withMock(async (mock) => {
    const login = await run(["login", ...flags(mock)], { browser: scriptedBrowser });
    try {
      assertEquals(login.code, EXIT.ok, login.stderr);
      const { path, entry } = await entryOf(login);
      await Deno.chmod(path, 0o644);

      const logout = await run(["logout", ...flags(mock)], { home: login.home });
      assertEquals(logout.code, EXIT.ok, logout.stderr);
      assertEquals(
        logout.stderr,
        `warning: The token cache file "${path}" can be read by other users, so its tokens are revoked before it is removed\n` +
          `Logged out of ${mock.issuer}\n`,
      );
      assertEquals(logout.stdout, "");
      assertEquals(mock.calls("revoke").map((r) => r.form.token_type_hint), ["refresh_token", "access_token"]);
      assertEquals(mock.revoked, [entry.refreshToken, entry.accessToken]);
      assert(!mock.accessTokens.has(entry.accessToken), "the access token no longer works");
      assertEquals(await exists(path), false, "the entry is removed");
    } finally {
      await cleanUp(login);
    }
  });
});

Deno.test("bug 4: logout --all revokes a readable entry too, and still refuses to trust one others could change", async () => {
  await withMock(async (mock) => {
    const login = await run(["login", ...flags(mock)], { browser: scriptedBrowser });
    try {
      assertEquals(login.code, EXIT.ok, login.stderr);
      const { path, entry } = await entryOf(login);
      await Deno.chmod(path, 0o640);
      const all = await run(["logout", "--all"], { home: login.home });
      assertEquals(all.code, EXIT.ok, all.stderr);
      assertEquals(mock.revoked, [entry.refreshToken, entry.accessToken]);
      assertEquals(await exists(path), false);

      // A file others could have written may name any revocation endpoint: it is removed unread.
      const again = await run(["login", ...flags(mock)], { browser: scriptedBrowser, home: login.home });
      assertEquals(again.code, EXIT.ok, again.stderr);
      const second = await entryOf(again);
      await Deno.chmod(second.path, 0o666);
      const logout = await run(["logout", ...flags(mock)], { home: login.home });
      assertEquals(logout.code, EXIT.ok, logout.stderr);
      assertEquals(
        logout.stderr,
        `warning: The token cache file "${second.path}" can be changed by other users; removing it without revoking its tokens\n` +
          `Logged out of ${mock.issuer}\n`,
      );
      assertEquals(mock.revoked.length, 2, "nothing more was sent to the revocation endpoint");
      assertEquals(await exists(second.path), false);
    } finally {
      await cleanUp(login);
    }
  });
});

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}
