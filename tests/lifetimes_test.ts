/**
 * Issue 11: the server's numbers are trusted only as far as they make sense. Token lifetimes (missing,
 * absurd, stated some other way), the refresh margin, refreshes that fail while the token still works,
 * granted scopes as servers really answer them, a local clock that is off, and 64 `token` processes
 * against one expired entry.
 *
 *     deno test --allow-net --allow-env --allow-read --allow-write --allow-run tests/lifetimes_test.ts
 *
 * The tool's clock is injected (`now`) and moved by the tests; nothing here waits for a token to
 * expire. Each case gives the mock's exact answer and asserts stdout, stderr, the exit code and what
 * the mock received.
 *
 * @module
 */
import { assert, assertEquals, assertMatch, assertStringIncludes } from "./assert.ts";
import { EXIT, fileStorage, testing, type TokenSet } from "../login.ts";
const { MAX_LIFETIME_S } = testing;
import {
  CONFIDENTIAL_CLIENT,
  createMockIssuer,
  type MockOptions,
  PUBLIC_CLIENT,
  type RecordedRequest,
  type ServedMock,
} from "./mock_issuer.ts";
import {
  assertNoLeaks,
  cleanLoginStderr,
  cleanUp,
  reshapeAnswer,
  type Run,
  run,
  type RunOptions,
  scriptedBrowser,
  secretsOf,
  withMock,
} from "./_harness.ts";

// ── The rig ─────────────────────────────────────────────────────────────────────────────────────

function flags(mock: ServedMock, ...extra: string[]): string[] {
  return ["--issuer", mock.issuer, "--client-id", PUBLIC_CLIENT.id, ...extra];
}

/** The tool's clock, starting at the real time (whole seconds): oauth4webapi checks ID tokens with the real one. */
function clock() {
  let t = Math.floor(Date.now() / 1000) * 1000;
  return {
    now: () => t,
    /** Moves the tool's clock on by `seconds`. */
    advance(seconds: number) {
      t += seconds * 1000;
    },
  };
}

type Clock = ReturnType<typeof clock>;

interface Rig {
  mock: ServedMock;
  clock: Clock;
  /** A browser login at the current time; fails the case unless it exits 0. */
  login(...extra: string[]): Promise<Run>;
  /** A `token` (or other command) run on the logged-in home. */
  cli(args: string[], options?: RunOptions): Promise<Run>;
  /** The cache entry on disk. */
  entry(): Promise<TokenSet>;
  /** The refresh requests the mock received. */
  refreshes(): RecordedRequest[];
  home(): string;
}

async function withRig(fn: (rig: Rig) => Promise<void>, options: MockOptions = {}): Promise<void> {
  await withMock(async (mock) => {
    const time = clock();
    let home: string | undefined;
    const rig: Rig = {
      mock,
      clock: time,
      async login(...extra) {
        const result = await run(["login", ...flags(mock), ...extra], {
          browser: (url) => scriptedBrowser(url),
          now: time.now,
          home,
        });
        home = result.home;
        return result;
      },
      cli: (args, options = {}) => run([...args, ...flags(mock)], { home: home!, now: time.now, ...options }),
      async entry() {
        const storage = fileStorage(`${home}/cache`);
        const [name] = await storage.list();
        return JSON.parse((await storage.read(`${name}.json`))!);
      },
      refreshes: () => mock.calls("token").filter((r) => r.form.grant_type === "refresh_token"),
      home: () => home!,
    };
    try {
      await fn(rig);
    } finally {
      if (home) await cleanUp({ home } as Run);
    }
  }, options);
}

/** The clean stderr of a browser login on this rig. */
function loggedIn(result: Run, mock: ServedMock, extra = ""): void {
  assertEquals(result.code, EXIT.ok, result.stderr);
  assertEquals(result.stderr, cleanLoginStderr(result.opened[0], `127.0.0.1:${mock.port}`) + extra);
}

function b64url(text: string): string {
  return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/** An access token that is a JWT (unsigned: the tool only reads its `exp` as a hint). */
function jwt(claims: Record<string, unknown>): string {
  return `${b64url(JSON.stringify({ alg: "RS256", typ: "at+jwt" }))}.${b64url(JSON.stringify(claims))}.c2ln`;
}

const iso = (ms: number) => new Date(ms).toISOString();

/** Shapes only the answers to one grant type. */
function onGrant(
  grant: string,
  shape: (body: Record<string, unknown>) => Record<string, unknown> | Response,
): NonNullable<ServedMock["shapeToken"]> {
  return (body, record) => record.form.grant_type === grant ? shape(body) : body;
}

// ── 1. Lifetimes ────────────────────────────────────────────────────────────────────────────────

Deno.test("case 1: a refresh answer without expires_in takes the access token's JWT exp, and is refreshed again once it passes", async () => {
  await withRig(async ({ mock, clock, login, cli, entry, refreshes }) => {
    loggedIn(await login(), mock);
    const first = await entry();
    clock.advance(3600 - 30); // 30 s left: inside --min-ttl
    const exp = clock.now() / 1000 + 2;
    const accessToken = jwt({ sub: mock.user.sub, exp });
    mock.shapeToken = onGrant("refresh_token", () => ({ access_token: accessToken, token_type: "Bearer" }));

    const refreshed = await cli(["token"]);
    assertEquals([refreshed.code, refreshed.stdout, refreshed.stderr], [EXIT.ok, `${accessToken}\n`, ""]);
    assertEquals(refreshes().length, 1);
    mock.shapeToken = undefined;

    const credential = await cli(["token", "--format", "exec-credential"]);
    assertEquals(credential.code, EXIT.ok, credential.stderr);
    assertEquals(JSON.parse(credential.stdout).status, { token: accessToken, expirationTimestamp: iso(exp * 1000) });
    assertEquals(refreshes().length, 1, "a token 2 s old with 2 s left is not due: its margin is 1 s");

    const whoami = await cli(["whoami"]);
    assertEquals(whoami.code, EXIT.ok, whoami.stderr);
    assertStringIncludes(whoami.stdout, `  token:   expires in less than a minute (${iso(exp * 1000)})\n`);
    assertStringIncludes(whoami.stdout, " as alice@example.com\n", "the identity is kept");

    clock.advance(3); // the JWT has expired
    const again = await cli(["token"]);
    assertEquals(again.code, EXIT.ok, again.stderr);
    assertEquals(again.stderr, "");
    assertEquals(refreshes().length, 2, "the expired token is refreshed, not printed");
    assert(again.stdout !== `${accessToken}\n` && mock.accessTokens.has(again.stdout.trim()), "a fresh token");
    assertEquals(refreshes().map((r) => r.form.refresh_token), [first.refreshToken, first.refreshToken]);
  });
});

Deno.test("expires_in that is 0, negative, a numeric string, non-numeric or absurd: clamped or ignored, never a crash", async (t) => {
  const minutes = 60;
  const variants: { name: string; value: unknown; raw?: string; lifetime?: number }[] = [
    { name: "0 (not stated)", value: 0 },
    { name: "negative (not stated)", value: -3600 },
    { name: 'the numeric string "3600"', value: "3600", lifetime: 3600 },
    { name: 'the non-numeric "soon" (not stated)', value: "soon" },
    { name: "1e13 s, far beyond any real lifetime (clamped to 365 days)", value: 1e13, lifetime: MAX_LIFETIME_S },
    { name: "1e999, Infinity once parsed (not stated)", value: undefined, raw: "1e999" },
    { name: "a fraction of a second (clamped to 1 s)", value: 0.001, lifetime: 1 },
  ];
  for (const variant of variants) {
    await t.step(variant.name, async () => {
      await withRig(async ({ mock, clock, login, cli, refreshes }) => {
        mock.shapeToken = onGrant("authorization_code", (body) => {
          if (variant.raw === undefined) return { ...body, expires_in: variant.value };
          const text = JSON.stringify({ ...body, expires_in: "RAW" }).replace('"RAW"', variant.raw);
          return new Response(text, { headers: { "content-type": "application/json" } });
        });
        const start = clock.now();
        loggedIn(await login(), mock);
        mock.shapeToken = undefined;
        const expiresAt = variant.lifetime === undefined ? null : iso(start + variant.lifetime * 1000);

        const whoami = await cli(["whoami", "--json"]);
        assertEquals(whoami.code, EXIT.ok, whoami.stderr);
        assertEquals(JSON.parse(whoami.stdout).expires_at, expiresAt);
        const text = await cli(["whoami"]);
        assertEquals(text.code, EXIT.ok, text.stderr);

        if (variant.lifetime === 1) {
          clock.advance(1);
          const due = await cli(["token"]);
          assertEquals([due.code, due.stderr, refreshes().length], [EXIT.ok, "", 1]);
          return;
        }
        const token = await cli(["token", "--format", "json"]);
        assertEquals(token.code, EXIT.ok, token.stderr);
        assertEquals(token.stderr, "");
        assertEquals(JSON.parse(token.stdout).expires_at, expiresAt);
        assertEquals(refreshes().length, 0, "a token just issued is not refreshed");
        if (expiresAt !== null) return;
        // Unknown: due 15 minutes after issue, less the margin (60 s).
        assertStringIncludes(
          text.stdout,
          "  token:   has no stated expiry; it is renewed within 15 minutes of issue\n",
        );
        clock.advance(14 * minutes - 1);
        assertEquals((await cli(["token"])).stderr, "");
        assertEquals(refreshes().length, 0, "not due before 14 minutes");
        clock.advance(1);
        const due = await cli(["token"]);
        assertEquals([due.code, due.stderr], [EXIT.ok, ""]);
        assertEquals(refreshes().length, 1, "due at 14 minutes");
        assert(mock.accessTokens.has(due.stdout.trim()));
      });
    });
  }
});

Deno.test("a refresh answer without expires_in and an opaque token keeps the previous lifetime", async () => {
  await withRig(async ({ mock, clock, login, cli, refreshes }) => {
    loggedIn(await login(), mock); // expires_in: 3600
    clock.advance(3600 - 10);
    mock.shapeToken = onGrant("refresh_token", ({ expires_in: _, ...body }) => body);
    const token = await cli(["token", "--format", "json"]);
    assertEquals([token.code, token.stderr, refreshes().length], [EXIT.ok, "", 1]);
    assertEquals(JSON.parse(token.stdout).expires_at, iso(clock.now() + 3600 * 1000));
  });
});

Deno.test("expires_at (Strava) and refresh_expires_in (Keycloak) are read where expires_in is missing", async () => {
  await withRig(async ({ mock, clock, login, cli }) => {
    const start = clock.now();
    mock.shapeToken = onGrant(
      "authorization_code",
      ({ expires_in: _, ...body }) => ({ ...body, expires_at: start / 1000 + 7200, refresh_expires_in: 1800 }),
    );
    loggedIn(await login(), mock);
    const whoami = await cli(["whoami"]);
    assertEquals(whoami.code, EXIT.ok, whoami.stderr);
    assertStringIncludes(whoami.stdout, `  token:   expires in 2 hours (${iso(start + 7200_000)})\n`);
    assertStringIncludes(whoami.stdout, `  refresh: yes, until ${iso(start + 1800_000)}\n`);
    clock.advance(1800);
    const later = await cli(["whoami"]);
    assertStringIncludes(later.stdout, `  refresh: the server said it expired at ${iso(start + 1800_000)}\n`);
  });
});

Deno.test("expires_at in milliseconds, and expires_at in the past, make no year-long or negative lifetime", async (t) => {
  for (
    const [name, at, lifetime] of [
      ["milliseconds", (start: number) => start + 1800_000, 1800],
      ["in the past: not stated", (start: number) => start / 1000 - 60, undefined],
    ] as const
  ) {
    await t.step(name, async () => {
      await withRig(async ({ mock, clock, login, cli }) => {
        const start = clock.now();
        mock.shapeToken = onGrant(
          "authorization_code",
          ({ expires_in: _, ...body }) => ({ ...body, expires_at: at(start) }),
        );
        loggedIn(await login(), mock);
        const token = await cli(["token", "--format", "json"]);
        assertEquals([token.code, token.stderr], [EXIT.ok, ""]);
        assertEquals(JSON.parse(token.stdout).expires_at, lifetime === undefined ? null : iso(start + lifetime * 1000));
      });
    });
  }
});

Deno.test("a refresh answer without refresh_token or id_token keeps the old refresh token and the identity", async () => {
  await withRig(async ({ mock, clock, login, cli, entry, refreshes }) => {
    loggedIn(await login(), mock);
    const before = await entry();
    clock.advance(3600);
    // Exactly what is sent: no refresh_token, no id_token.
    mock.shapeToken = onGrant("refresh_token", (body) => ({
      access_token: body.access_token,
      token_type: "Bearer",
      expires_in: 3600,
      scope: body.scope,
    }));
    const token = await cli(["token"]);
    assertEquals([token.code, token.stderr], [EXIT.ok, ""]);
    const after = await entry();
    assertEquals(token.stdout, `${after.accessToken}\n`);
    assertEquals(after.refreshToken, before.refreshToken);
    assertEquals([after.idToken, after.user, after.subject], [before.idToken, "alice@example.com", mock.user.sub]);
    clock.advance(3600);
    assertEquals((await cli(["token"])).code, EXIT.ok);
    assertEquals(refreshes().map((r) => r.form.refresh_token), [before.refreshToken, before.refreshToken]);
    const whoami = await cli(["whoami"]);
    assertStringIncludes(whoami.stdout, " as alice@example.com\n");
  });
});

// ── 2. The margin ───────────────────────────────────────────────────────────────────────────────

Deno.test("case 2: 6-second tokens are not refreshed just after issue; eight concurrent token calls make one refresh", async () => {
  await withRig(async ({ mock, clock, login, cli, entry, refreshes }) => {
    loggedIn(await login(), mock);
    const issued = (await entry()).accessToken;
    for (const seconds of [0, 2]) {
      clock.advance(seconds);
      const token = await cli(["token"]);
      assertEquals([token.code, token.stdout, token.stderr], [EXIT.ok, `${issued}\n`, ""]);
    }
    assertEquals(refreshes().length, 0, "margin min(60 s, 3 s): 4 s left is not due");

    clock.advance(5); // expired
    const results = await Promise.all(Array.from({ length: 8 }, () => cli(["token"])));
    for (const result of results) assertEquals([result.code, result.stderr], [EXIT.ok, ""]);
    assertEquals(refreshes().length, 1, "one refresh for eight calls");
    const printed = new Set(results.map((r) => r.stdout));
    assertEquals(printed.size, 1, "all eight print the same token");
    const [token] = printed;
    assertEquals(token, `${(await entry()).accessToken}\n`);
    assert(token !== `${issued}\n` && mock.accessTokens.has(token.trim()));
    assertEquals(mock.refreshTokens.get((await entry()).refreshToken!)?.used, false, "the rotated grant is alive");
  }, { accessTokenTtl: 6, rotateRefreshTokens: true });
});

// ── 3. A refresh that fails while the token still works ─────────────────────────────────────────

Deno.test("case 3: a refresh that fails while the token is still valid prints the cached token, says why, exits 0", async (t) => {
  const failures: {
    name: string;
    why: (mock: ServedMock) => string;
    options: (mock: ServedMock) => RunOptions;
    sent: number;
  }[] = [
    {
      name: "503",
      why: () => "the server answered HTTP 503, a server error",
      options: (mock) => {
        mock.intercept = (record) =>
          record.form.grant_type === "refresh_token" ? new Response("Service Unavailable", { status: 503 }) : undefined;
        return {};
      },
      sent: 1,
    },
    {
      name: "unreachable",
      why: (mock) =>
        `Cannot reach 127.0.0.1:${mock.port}: the connection was refused (nothing listens on that port) (POST http://127.0.0.1:${mock.port}/token)`,
      options: () => ({ fetch: () => Promise.reject(new TypeError("Connection refused (os error 111)")) }),
      sent: 0,
    },
    {
      name: "no answer within the request timeout",
      why: (mock) => `The server at 127.0.0.1:${mock.port} did not answer within 0.05 seconds`,
      options: () => ({
        httpTimeoutMs: 50,
        fetch: (_input, init) =>
          new Promise((_, reject) => init?.signal?.addEventListener("abort", () => reject(init.signal!.reason))),
      }),
      sent: 0,
    },
  ];
  for (const failure of failures) {
    await t.step(failure.name, async () => {
      await withRig(async ({ mock, clock, login, cli, entry, refreshes }) => {
        loggedIn(await login(), mock);
        const cached = await entry();
        clock.advance(3600 - 40); // 40 s left, inside --min-ttl
        const options = failure.options(mock);
        const token = await cli(["token"], options);
        assertEquals(token.code, EXIT.ok, token.stderr);
        assertEquals(token.stdout, `${cached.accessToken}\n`);
        assertEquals(
          token.stderr,
          `warning: Cannot renew the access token (${
            failure.why(mock)
          }); using the cached one, which expires in 40 seconds; it is tried again at the next use\n`,
        );
        assertEquals(refreshes().length, failure.sent);
        assertEquals(await entry(), cached, "the entry is untouched");
        assertNoLeaks(token, secretsOf(mock), { stdoutMayHoldTokens: true });

        clock.advance(41); // now expired: the same failure is an error
        const expired = await cli(["token"], failure.options(mock));
        assertEquals([expired.code, expired.stdout], [EXIT.failure, ""]);
        assert(expired.stderr.startsWith("error: ") && expired.stderr.includes(failure.why(mock)), expired.stderr);
      });
    });
  }

  await t.step("no refresh token", async () => {
    await withRig(async ({ mock, clock, login, cli, entry }) => {
      loggedIn(
        await login("--scope", "openid profile"),
        mock,
        "note: The server issued no refresh token, so you will sign in again when this token expires; ask for one by adding offline_access to --scope\n",
      );
      const cached = await entry();
      clock.advance(3600 - 40);
      const token = await cli(["token", "--scope", "openid profile"]);
      assertEquals([token.code, token.stdout], [EXIT.ok, `${cached.accessToken}\n`]);
      assertEquals(
        token.stderr,
        'warning: Cannot renew the access token (there is no refresh token); using the cached one, which expires in 40 seconds; run "oauth-login login" to sign in again\n',
      );
      clock.advance(40);
      const expired = await cli(["token", "--scope", "openid profile"]);
      assertEquals([expired.code, expired.stdout], [EXIT.loginRequired, ""]);
      assertStringIncludes(expired.stderr, "error: The cached token has expired and cannot be refreshed for ");
      assertEquals(mock.calls("token").length, 1, "only the code exchange");
    });
  });

  await t.step("503 for a token of unknown lifetime, due for renewal", async () => {
    await withRig(async ({ mock, clock, login, cli, entry, refreshes }) => {
      mock.shapeToken = onGrant("authorization_code", ({ expires_in: _, ...body }) => body);
      loggedIn(await login(), mock);
      const cached = await entry();
      clock.advance(14 * 60);
      mock.intercept = (record) =>
        record.form.grant_type === "refresh_token" ? new Response("Service Unavailable", { status: 503 }) : undefined;
      const token = await cli(["token"]);
      assertEquals([token.code, token.stdout], [EXIT.ok, `${cached.accessToken}\n`]);
      assertEquals(
        token.stderr,
        "warning: Cannot renew the access token (the server answered HTTP 503, a server error); using the cached one; it is tried again at the next use\n",
      );
      assertEquals(refreshes().length, 1);
    });
  });

  await t.step("invalid_grant ends the login even with time left", async () => {
    await withRig(async ({ mock, clock, login, cli, refreshes }) => {
      loggedIn(await login(), mock);
      clock.advance(3600 - 40);
      mock.refreshTokens.clear(); // the grant was revoked at the server
      const token = await cli(["token"]);
      assertEquals([token.code, token.stdout], [EXIT.loginRequired, ""]);
      assertStringIncludes(token.stderr, "warning: The session has ended at the server");
      assertEquals(refreshes().length, 1);
      const whoami = await cli(["whoami"]);
      assertEquals(whoami.code, EXIT.loginRequired, "the entry was removed");
    });
  });
});

// ── 4. Scopes ───────────────────────────────────────────────────────────────────────────────────

Deno.test("case 4 and scope forms: a warning only when the server clearly narrowed the grant", async (t) => {
  const cases: {
    name: string;
    scope?: string;
    answer: (body: Record<string, unknown>) => Record<string, unknown>;
    stderr?: string;
  }[] = [
    {
      name: "offline_access granted by a refresh token but not echoed (Entra)",
      answer: (body) => ({ ...body, scope: "openid profile" }),
    },
    {
      name: "scope omitted: what was asked was granted (RFC 6749 §5.1)",
      answer: ({ scope: _, ...body }) => body,
    },
    {
      name: "scope reordered",
      answer: (body) => ({ ...body, scope: "offline_access profile openid" }),
    },
    {
      name: "openid not echoed, but an ID token came",
      answer: (body) => ({ ...body, scope: "profile offline_access" }),
    },
    {
      name: "long URL forms (Google, Entra)",
      scope: "openid email profile User.Read offline_access",
      answer: (body) => ({
        ...body,
        scope:
          "openid https://www.googleapis.com/auth/userinfo.email https://www.googleapis.com/auth/userinfo.profile https://graph.microsoft.com/User.Read",
      }),
    },
    {
      name: "clearly narrowed",
      scope: "openid profile api:write offline_access",
      answer: (body) => ({ ...body, scope: "openid profile offline_access" }),
      stderr: "warning: The server did not grant api:write\n",
    },
  ];
  for (const c of cases) {
    await t.step(c.name, async () => {
      await withRig(async ({ mock, login, cli }) => {
        mock.shapeToken = onGrant("authorization_code", c.answer);
        loggedIn(await login(...(c.scope ? ["--scope", c.scope] : [])), mock, c.stderr ?? "");
        const authorize = mock.calls("authorize")[0];
        assertEquals(authorize.query.scope, c.scope ?? "openid profile offline_access");
        const whoami = await cli(["whoami", ...(c.scope ? ["--scope", c.scope] : [])]);
        assertStringIncludes(whoami.stdout, "  refresh: yes\n");
      });
    });
  }

  await t.step("no refresh token: no remedy the server does not accept", async () => {
    await withRig(async ({ mock, login }) => {
      mock.issueRefreshTokens = false;
      mock.metadata.prompt_values_supported = ["none", "login"];
      loggedIn(
        await login(),
        mock,
        "note: The server issued no refresh token, so you will sign in again when this token expires\n",
      );
    });
    await withRig(async ({ mock, login }) => {
      mock.metadata.scopes_supported = ["openid", "profile"]; // no offline_access to suggest
      loggedIn(
        await login(),
        mock,
        "note: The server issued no refresh token, so you will sign in again when this token expires\n",
      );
      assertEquals(mock.calls("authorize")[0].query.scope, "openid profile");
    });
  });
});

Deno.test("Google: the note after a login without a refresh token names Google's own parameters", async (t) => {
  // The mock plays https://accounts.google.com: the tool's fetch and the browser's hops to it reach its handler.
  const google = createMockIssuer();
  google.issuer = "https://accounts.google.com";
  google.metadata.scopes_supported = ["openid", "email", "profile"];
  google.issueRefreshTokens = false; // no access_type=offline
  const toGoogle = (input: string | URL | Request, init?: RequestInit) =>
    google.handler(new Request(input instanceof Request ? input.url : String(input), init));
  const browser = async (start: string) => {
    const short = await fetch(start, { redirect: "manual" });
    await short.body?.cancel();
    const approved = await toGoogle(short.headers.get("location")!);
    const page = await fetch(approved.headers.get("location")!);
    await page.body?.cancel();
  };
  for (
    const [extra, note] of [
      [["--param", "access_type=online"], "; ask for one with --param access_type=offline --prompt consent"],
      [[], ""],
    ] as const
  ) {
    // The google preset (inferred from the host) asks for access_type=offline itself, unless the person says otherwise.
    await t.step(
      extra.length ? "the remedy Google accepts" : "access_type=offline already sent: no remedy",
      async () => {
        const result = await run(
          ["login", "--issuer", google.issuer, "--client-id", CONFIDENTIAL_CLIENT.id, ...extra],
          {
            fetch: toGoogle as typeof fetch,
            openUrl: browser,
            env: { OAUTH_CLIENT_SECRET: CONFIDENTIAL_CLIENT.secret! },
          },
        );
        try {
          assertEquals(result.code, EXIT.ok, result.stderr);
          assertEquals(google.calls("authorize").at(-1)?.query.scope, "openid email profile");
          assert(
            result.stderr.endsWith(
              `Logged in as alice@example.com\nnote: The server issued no refresh token, so you will sign in again when this token expires${note}\n`,
            ),
            result.stderr,
          );
        } finally {
          await cleanUp(result);
        }
      },
    );
  }
});

// ── 5. The clock ────────────────────────────────────────────────────────────────────────────────

Deno.test("an ID token refused for its times names a local clock that is off by more than a minute", async (t) => {
  const hours = 3600_000;
  await t.step("the server's Date is 2 hours behind ours", async () => {
    await withMock(async (mock) => {
      mock.shapeToken = (body) =>
        new Response(JSON.stringify(body), {
          headers: { "content-type": "application/json", date: new Date(Date.now() - 2 * hours).toUTCString() },
        });
      const result = await run(["login", ...flags(mock)], { browser: (url) => scriptedBrowser(url) });
      assertEquals([result.code, result.stdout], [EXIT.failure, ""]);
      assertEquals(
        result.stderr,
        cleanLoginStderr(result.opened[0], `127.0.0.1:${mock.port}`).replace(/Logged in as .*\n/, "") +
          "error: The ID token was refused for its issue or expiry time, and the local clock looks off: it is 2 hours ahead of the server's\n" +
          "hint: set this computer's clock right (turn on automatic time), then try again\n",
      );
      assertEquals(mock.calls("token").length, 1);
      await cleanUp(result);
    }, { now: () => Date.now() - 2 * hours });
  });
  await t.step("the server's Date agrees with ours: the refusal says nothing about the clock", async () => {
    await withMock(async (mock) => {
      const result = await run(["login", ...flags(mock)], { browser: (url) => scriptedBrowser(url) });
      assertEquals(result.code, EXIT.failure);
      assertStringIncludes(
        result.stderr,
        'error: Cannot exchange the authorization code: the server\'s answer is not valid (unexpected JWT "exp"',
      );
      assert(!result.stderr.includes("clock"), result.stderr);
      await cleanUp(result);
    }, { now: () => Date.now() - 2 * hours });
  });
});

// ── 6. Refresh under load: 64 processes ─────────────────────────────────────────────────────────

const PERMISSIONS = ["--allow-net", "--allow-env", "--allow-read", "--allow-write", "--allow-run"];
const LOGIN_TS = new URL("../login.ts", import.meta.url).pathname;
/** Each of the 64 processes is killed after this many seconds (a stuck lock would hold it for 60 s). */
const PROCESS_LIMIT_S = 45;

/**
 * Starts `count` commands at once from one bash (its forks are cheap, where a spawn from this
 * process is slow under load and would stagger the starts), each under `timeout`, and records for
 * each its exit code, stdout, stderr, and its start and end on the wall clock ($EPOCHREALTIME).
 */
const LAUNCHER = `dir=$1; count=$2; shift 2
for i in $(seq 1 "$count"); do
  ( s=$EPOCHREALTIME; timeout -s KILL ${PROCESS_LIMIT_S} "$@" >"$dir/out.$i" 2>"$dir/err.$i" </dev/null
    c=$?; echo "$c $s $EPOCHREALTIME" >"$dir/time.$i" ) &
done
wait`;

interface Exit {
  code: number;
  stdout: string;
  stderr: string;
  /** Wall-clock start and end, in ms since the epoch. */
  started: number;
  ended: number;
}

/** `count` `token` processes started at once on `cacheDir`. */
async function tokenProcesses(count: number, mock: ServedMock, cacheDir: string): Promise<Exit[]> {
  const dir = await Deno.makeTempDir({ prefix: "oauth-login-64-" });
  try {
    const argv = [Deno.execPath(), "run", "--quiet", ...PERMISSIONS, LOGIN_TS, "token", ...flags(mock)];
    const launcher = await new Deno.Command("bash", {
      args: ["-c", LAUNCHER, "launcher", dir, String(count), ...argv],
      env: { NO_COLOR: "1", LC_ALL: "C", OAUTH_LOGIN_CACHE: cacheDir, OAUTH_TOKEN_STORAGE: "file" },
      stdin: "null",
    }).output();
    assertEquals(launcher.code, 0, new TextDecoder().decode(launcher.stderr));
    return await Promise.all(Array.from({ length: count }, async (_, i) => {
      const [code, started, ended] = (await Deno.readTextFile(`${dir}/time.${i + 1}`)).trim().split(" ").map(Number);
      return {
        code,
        stdout: await Deno.readTextFile(`${dir}/out.${i + 1}`),
        stderr: await Deno.readTextFile(`${dir}/err.${i + 1}`),
        started: started * 1000,
        ended: ended * 1000,
      };
    }));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Released waiters must be done within this long (ms) of the refresh answer, on a loaded 2-core machine. */
const RELEASE_BOUND_MS = 3_000;

Deno.test({
  name: "64 token processes started at once against an expired entry: one refresh, one token, no long wait",
  ignore: Deno.build.os === "windows",
  fn: async () => {
    await withMock(async (mock) => {
      const login = await run(["login", ...flags(mock)], { browser: (url) => scriptedBrowser(url) });
      try {
        assertEquals(login.code, EXIT.ok, login.stderr);
        const cacheDir = `${login.home}/cache`;
        const storage = fileStorage(cacheDir);
        const [name] = await storage.list();
        const cached: TokenSet = JSON.parse((await storage.read(`${name}.json`))!);
        const expiresAt = Date.now() - 1000;
        await storage.write(`${name}.json`, JSON.stringify({ ...cached, expiresAt, issuedAt: expiresAt - 3600_000 }));

        const REFRESH_MS = 500; // the server takes its time, so that the processes really wait for it
        let answeredAt = 0;
        mock.intercept = async (record) => {
          if (record.form.grant_type !== "refresh_token") return undefined;
          await new Promise((resolve) => setTimeout(resolve, REFRESH_MS));
          answeredAt = Date.now();
          return undefined;
        };
        const results = await tokenProcesses(64, mock, cacheDir);
        // A process that waited more than 3 s for the others' refresh (on a loaded machine) says so, and nothing else.
        const waiting =
          /^(Waiting for another oauth-login process, which is refreshing this token \(Ctrl-C\s+cancels\)\n)?$/;
        for (const result of results) {
          assertEquals(result.code, EXIT.ok, result.stderr);
          assertMatch(result.stderr, waiting);
        }
        const refreshes = mock.calls("token").filter((r) => r.form.grant_type === "refresh_token");
        assertEquals(refreshes.length, 1, "exactly one refresh request for 64 processes");
        assertEquals(refreshes[0].form.refresh_token, cached.refreshToken);
        const printed = new Set(results.map((r) => r.stdout));
        assertEquals(printed.size, 1, "all 64 print the same token");
        const [token] = printed;
        assert(token !== `${cached.accessToken}\n` && mock.accessTokens.has(token.trim()), "the refreshed token");
        assertEquals(token, `${JSON.parse((await storage.read(`${name}.json`))!).accessToken}\n`);
        // Every process that started before the refresh was answered waited for it: each must be done
        // soon after the answer, not released one at a time.
        const waiters = results.filter((r) => r.started < answeredAt);
        assert(waiters.length > 1, `only ${waiters.length} process started before the refresh was answered`);
        const lastDone = Math.max(...waiters.map((r) => r.ended)) - answeredAt;
        assert(
          lastDone <= RELEASE_BOUND_MS,
          `the last of ${waiters.length} waiting processes ended ${Math.round(lastDone)} ms after the refresh answer`,
        );
      } finally {
        await cleanUp(login);
      }
    }, { rotateRefreshTokens: true });
  },
});

// ── The device flow's numbers ───────────────────────────────────────────────────────────────────

Deno.test("device flow: an interval or a code lifetime out of range is paced, never a tight loop", async (t) => {
  const variants: { name: string; answer: Record<string, unknown>; sleeps: number[] }[] = [
    { name: "interval 1e12 s (beyond any timer): 5 minutes", answer: { interval: 1e12 }, sleeps: [300_000, 300_000] },
    { name: "interval 0.001 s: 1 s", answer: { interval: 0.001 }, sleeps: [1000, 1000] },
    { name: "expires_in 0: the code is taken to live 30 minutes", answer: { expires_in: 0 }, sleeps: [5000, 5000] },
  ];
  for (const variant of variants) {
    await t.step(variant.name, async () => {
      await withMock(async (mock) => {
        Object.assign(mock.device, { interval: 5, expiresIn: 3600, pending: 1 });
        // The device authorization answer as the mock gives it, with the variant's values.
        reshapeAnswer(mock, "/device_authorization", (body) => ({ ...body, ...variant.answer }), { every: true });
        let now = Date.now();
        const sleeps: number[] = [];
        const result = await run(["login", ...flags(mock), "--flow", "device"], {
          now: () => now,
          sleep: (ms) => {
            sleeps.push(ms);
            now += ms;
            return Promise.resolve();
          },
        });
        try {
          assertEquals(result.code, EXIT.ok, result.stderr);
          assertStringIncludes(result.stderr, "Logged in as alice@example.com\n");
          assertEquals(sleeps, variant.sleeps);
          assertEquals(mock.calls("token").length, 2, "one pending poll, then the tokens");
        } finally {
          await cleanUp(result);
        }
      });
    });
  }
});
