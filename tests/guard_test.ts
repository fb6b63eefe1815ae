/**
 * The security properties a careful reviewer breaks on purpose (issue 10, section 1): each test
 * here goes red when its property is removed from login.ts, and `deno task mutants`
 * (tests/mutants.ts) shows that it does, one breakage at a time.
 *
 * - `state`, `nonce` and the PKCE code_verifier are fresh for each login and carry at least 128 bits;
 * - the callback server is bound to the loopback address only (never 0.0.0.0 or ::);
 * - a refreshed ID token that names another `sub` is refused (OpenID Connect Core §12.2);
 * - the person is named from the ID token, and from UserInfo when there is no ID token;
 * - the browser timeout fires (a bounded run fails in seconds rather than hanging the suite);
 * - with HTTP(S)_PROXY set, the preflight of a loopback issuer goes direct (Deno's fetch alone would proxy it).
 *
 * @module
 */
import { assert, assertEquals, assertMatch, assertStringIncludes } from "./assert.ts";
import { EXIT } from "../login.ts";
import { CONFIDENTIAL_CLIENT, PUBLIC_CLIENT, type ServedMock } from "./mock_issuer.ts";
import {
  assertLoopbackOnly,
  cleanUp,
  freePort,
  json,
  portOf,
  run,
  type RunOptions,
  scriptedBrowser,
  START_PATH,
  withMock,
} from "./_harness.ts";

function flags(mock: ServedMock, ...extra: string[]): string[] {
  return ["--issuer", mock.issuer, "--client-id", PUBLIC_CLIENT.id, ...extra];
}

/** A login by the scripted browser that approves; its temporary home is removed afterwards. */
async function logIn(args: string[], options: RunOptions = {}) {
  const result = await run(args, { browser: scriptedBrowser, ...options });
  await cleanUp(result);
  assertEquals(result.code, EXIT.ok, result.stderr);
  return result;
}

/** base64url of at least 16 random bytes (128 bits) has at least 22 characters. */
const AT_LEAST_128_BITS = /^[A-Za-z0-9_-]{22,}$/;

Deno.test("state, nonce and code_verifier are fresh for each login and carry at least 128 bits", async () => {
  await withMock(async (mock) => {
    await logIn(flags(mock));
    await logIn(flags(mock));
    const authorizations = mock.calls("authorize");
    const exchanges = mock.calls("token");
    assertEquals([authorizations.length, exchanges.length], [2, 2]);
    const values = {
      state: authorizations.map((r) => r.query.state),
      nonce: authorizations.map((r) => r.query.nonce),
      code_verifier: exchanges.map((r) => r.form.code_verifier),
    };
    for (const [name, [first, second]] of Object.entries(values)) {
      assertMatch(first ?? "", AT_LEAST_128_BITS, `${name} of the first login`);
      assertMatch(second ?? "", AT_LEAST_128_BITS, `${name} of the second login`);
      assert(first !== second, `both logins used the same ${name}`);
    }
    assert(values.state[0] !== values.code_verifier[0], "the state is not the code_verifier");
  });
});

Deno.test("the callback server refuses connections on every address but loopback (ephemeral port)", async () => {
  await withMock(async (mock) => {
    let tried: string[] = [];
    const result = await logIn(flags(mock), {
      browser: async (start) => {
        tried = await assertLoopbackOnly(portOf(start));
        return scriptedBrowser(start);
      },
    });
    assertMatch(result.opened[0], new RegExp(`^http://127\\.0\\.0\\.1:\\d+${START_PATH}$`));
    assert(tried.length > 0);
  });
});

Deno.test("the callback server refuses connections on every address but loopback (--port, localhost)", async () => {
  await withMock(async (mock) => {
    const port = freePort();
    const localhost = `http://localhost:${freePort()}/callback`;
    mock.clients = [{ ...PUBLIC_CLIENT, redirectUris: [`http://127.0.0.1:${port}/callback`, localhost] }];
    const guarded = {
      browser: async (start: string) => {
        await assertLoopbackOnly(portOf(start));
        return scriptedBrowser(start);
      },
    };
    const fixed = await logIn(flags(mock, "--port", String(port)), guarded);
    assertMatch(fixed.opened[0], new RegExp(`^http://127\\.0\\.0\\.1:${port}${START_PATH}$`));
    const both = await logIn(flags(mock, "--redirect-uri", localhost), guarded);
    assertMatch(both.opened[0], new RegExp(`^http://localhost:${portOf(localhost)}${START_PATH}$`));
  });
});

Deno.test("token refuses a refreshed ID token that names another sub: exit 1, nothing printed, entry kept", async () => {
  const clock = { now: Date.now() };
  await withMock(async (mock) => {
    const first = await run(flags(mock), { browser: scriptedBrowser, now: () => clock.now });
    try {
      assertEquals(first.code, EXIT.ok, first.stderr);
      const [file] = [...Deno.readDirSync(`${first.home}/cache`)].map((e) => e.name).filter((n) => n.endsWith(".json"));
      const path = `${first.home}/cache/${file}`;
      const before = await Deno.readTextFile(path);
      assertEquals(JSON.parse(before).subject, mock.user.sub);

      mock.user = { ...mock.user, sub: "00u2mallory" }; // the server now answers for someone else
      clock.now += 3600_000; // the access token is due for a refresh
      const refreshed = await run(["token", ...flags(mock)], { home: first.home, now: () => clock.now });
      assertEquals(mock.calls("token").filter((r) => r.form.grant_type === "refresh_token").length, 1);
      assertEquals(refreshed.stdout, "", "no access token of another user is printed");
      assertEquals(refreshed.code, EXIT.failure, refreshed.stderr);
      assertEquals(
        refreshed.stderr,
        "error: Cannot refresh the access token: the new ID token names another user\n" +
          'hint: the cached tokens were kept unused; run "oauth-login login" to sign in again\n',
      );
      assertEquals(await Deno.readTextFile(path), before, "the cached entry is not replaced");
    } finally {
      await cleanUp(first);
    }
  }, { now: () => clock.now });
});

Deno.test("the person is named from the ID token, not from UserInfo, when the ID token names them", async () => {
  await withMock(async (mock) => {
    mock.intercept = (record) =>
      record.path.endsWith("/userinfo") ? json({ sub: mock.user.sub, preferred_username: "from-userinfo" }) : undefined;
    const result = await logIn(flags(mock));
    assertStringIncludes(result.stderr, "Logged in as alice@example.com\n");
    assertEquals(mock.calls("userinfo").length, 0, "the ID token was enough");
  });
});

Deno.test("the person is named from UserInfo when there is no ID token (scope without openid)", async () => {
  await withMock(async (mock) => {
    const result = await logIn(flags(mock, "--scope", "profile offline_access"));
    assertEquals(mock.calls("userinfo").length, 1);
    assertStringIncludes(result.stderr, "Logged in as alice@example.com\n");
    assert(!result.stderr.includes(mock.user.sub), "the name, not the bare sub");
  });
});

Deno.test("a confidential client is named from UserInfo when introspection and the ID token give no name", async () => {
  await withMock(async (mock) => {
    mock.intercept = (record) =>
      record.path.endsWith("/introspect") ? json({ active: true, sub: mock.user.sub }) : undefined;
    const result = await logIn(["--issuer", mock.issuer, "--client-id", CONFIDENTIAL_CLIENT.id, "--scope", "profile"], {
      env: { OAUTH_CLIENT_SECRET: CONFIDENTIAL_CLIENT.secret! },
    });
    assertEquals(mock.calls("introspect").length, 1);
    assertEquals(mock.calls("userinfo").length, 1);
    assertStringIncludes(result.stderr, "Logged in as alice@example.com\n");
  });
});

Deno.test("the browser timeout fires: exit 5 within a second of --timeout, not a hang", async () => {
  await withMock(async (mock) => {
    const result = await run(flags(mock, "--timeout", "0.3"), { boundMs: 3_000 });
    await cleanUp(result);
    assertEquals(result.code, EXIT.timedOut, result.stderr);
    assertStringIncludes(result.stderr, "error: No answer from the browser within 0.3 seconds\n");
    assert(result.ms < 1_300, `the timeout of 0.3 s fired after ${Math.round(result.ms)} ms`);
    assertEquals(mock.calls("token").length, 0);
  });
});

/** `deno run -A login.ts ARGS` as its own process, with only `env` (and PATH, HOME) in its environment. */
async function tool(args: string[], env: Record<string, string>): Promise<{ code: number; stderr: string }> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-q", "-A", new URL("../login.ts", import.meta.url).pathname, ...args],
    clearEnv: true,
    env: { PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin", HOME: Deno.env.get("HOME") ?? "/tmp", ...env },
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const bound = setTimeout(() => child.kill("SIGKILL"), 30_000);
  try {
    const output = await child.output();
    return { code: output.code, stderr: new TextDecoder().decode(output.stderr) };
  } finally {
    clearTimeout(bound);
  }
}

Deno.test("with HTTP(S)_PROXY set, the preflight of a loopback issuer's sign-in URL goes direct, never to the proxy", async () => {
  // Deno's own fetch sends loopback destinations through HTTP_PROXY: only the route login.ts names
  // for the preflight keeps it direct. A real process, since Deno reads the variables from its own environment.
  const seen: string[] = [];
  const proxy = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (request) => {
    seen.push(`${request.method} ${request.url}`);
    return new Response("the proxy cannot reach that host", { status: 502 });
  });
  const home = await Deno.makeTempDir({ prefix: "oauth-login-guard-" });
  try {
    await withMock(async (mock) => {
      const proxyUrl = `http://127.0.0.1:${proxy.addr.port}`;
      const result = await tool(["login", ...flags(mock), "--timeout", "20"], {
        HTTP_PROXY: proxyUrl,
        HTTPS_PROXY: proxyUrl,
        // The browser: curl following the redirects to the callback, itself never through a proxy.
        BROWSER: "curl --silent --location --noproxy * --max-time 20 --output /dev/null",
        DISPLAY: ":0",
        DENO_NO_UPDATE_CHECK: "1",
        OAUTH_LOGIN_CACHE: `${home}/cache`,
      });
      assertEquals(result.code, EXIT.ok, result.stderr);
      assertEquals(seen, [], "nothing reached the proxy");
      assertEquals(mock.preflights().length, 1, "the preflight reached the issuer directly");
      assertEquals(mock.calls("token").length, 1);
    });
  } finally {
    await proxy.shutdown();
    await Deno.remove(home, { recursive: true });
  }
});
