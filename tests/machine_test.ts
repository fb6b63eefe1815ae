/**
 * Logins without a person (issue 22) against the mock issuer: client credentials, JWT bearer and token
 * exchange; the subject token sources (GitHub Actions through a stand-in of its ID-token endpoint,
 * GitLab's variables, Kubernetes-style files, env:, stdin), each absent source in one sentence; what a
 * project's `.env` may not set; entries kept apart from a person's; the grant run again when due,
 * under the lock (64 real processes, one request); `issued_token_type`; and `exec`: the token in the
 * program's environment and nowhere else (its /proc), its exit code, signals passed on, DPoP refused,
 * a narrower `--scope` by refresh.
 *
 * @module
 */
import { EXIT, fileStorage, realDeps, type TokenSet } from "../login.ts";
import {
  ACCESS_TOKEN_TYPE,
  CONFIDENTIAL_CLIENT,
  JWT_BEARER,
  jwtClaims,
  type ServedMock,
  TOKEN_EXCHANGE,
} from "./mock_issuer.ts";
import {
  assertNoLeaks,
  cleanUp,
  filesUnder,
  run,
  type RunOptions,
  scriptedBrowser,
  within,
  withMock,
} from "./_harness.ts";
import { assert, assertEquals, assertMatch, assertStringIncludes } from "./assert.ts";

// ── Shared ──────────────────────────────────────────────────────────────────────────────────────

const SECRET = CONFIDENTIAL_CLIENT.secret!;
const JWT_TYPE = "urn:ietf:params:oauth:token-type:jwt";
const REPO = "/home/alice/repo";

/** The flags of a grant at the mock with the confidential client. */
function grantFlags(mock: ServedMock, grant: string, ...extra: string[]): string[] {
  return ["--issuer", mock.issuer, "--client-id", CONFIDENTIAL_CLIENT.id, "--grant", grant, ...extra];
}

/** Runs a command with the client's secret in the environment (and `env`). */
function withSecret(options: RunOptions = {}): RunOptions {
  return { ...options, env: { OAUTH_CLIENT_SECRET: SECRET, ...options.env } };
}

function b64url(text: string): string {
  return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/** A JWT for the mock (which reads its claims and does not check its signature): for `aud`, living 10 minutes. */
function jwt(claims: Record<string, unknown>, aud: string): string {
  const now = Math.floor(Date.now() / 1000);
  const header = b64url(JSON.stringify({ alg: "ES256", typ: "JWT" }));
  const payload = b64url(JSON.stringify({ iss: "https://ci.example", aud, iat: now, exp: now + 600, ...claims }));
  return `${header}.${payload}.c2lnbmF0dXJl`;
}

/** The token requests of a grant without a person the mock received. */
function grantRequests(mock: ServedMock) {
  return mock.calls("token").filter((r) => r.form.grant_type !== "authorization_code");
}

/** The one cache entry of a run's home that was made by `grant` (or by a person, with undefined). */
async function entryOf(home: string, grant?: string): Promise<TokenSet> {
  const storage = fileStorage(`${home}/cache`);
  const entries: TokenSet[] = [];
  for (const name of await storage.list()) entries.push(JSON.parse((await storage.read(`${name}.json`))!));
  const found = entries.filter((entry) => entry.grant === grant);
  assertEquals(found.length, 1, `one entry of ${grant ?? "a person"}`);
  return found[0];
}

/** Makes every cached entry due: expired a second ago. */
async function expireAll(home: string): Promise<void> {
  const storage = fileStorage(`${home}/cache`);
  const now = Date.now();
  for (const name of await storage.list()) {
    const entry: TokenSet = JSON.parse((await storage.read(`${name}.json`))!);
    await storage.write(
      `${name}.json`,
      JSON.stringify({ ...entry, issuedAt: now - 3_600_000, expiresAt: now - 1_000 }),
    );
  }
}

/** A stand-in for GitHub Actions' ID-token endpoint: the job's bearer token, a JWT for the audience asked. */
function githubActions(status = 200) {
  const requestToken = `ghs_${crypto.randomUUID().replaceAll("-", "")}`;
  const asked: { audience: string | null; authorization: string | null }[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (request) => {
    const url = new URL(request.url);
    asked.push({ audience: url.searchParams.get("audience"), authorization: request.headers.get("authorization") });
    if (status !== 200 || request.headers.get("authorization") !== `bearer ${requestToken}`) {
      return Response.json({ message: "Unauthorized" }, { status: status === 200 ? 401 : status });
    }
    const audience = url.searchParams.get("audience") ?? "https://github.com/octo";
    return Response.json({ count: 1, value: jwt({ sub: "repo:octo/app:ref:refs/heads/main" }, audience) });
  });
  return {
    env: {
      ACTIONS_ID_TOKEN_REQUEST_URL: `http://127.0.0.1:${server.addr.port}/token?api-version=2.0`,
      ACTIONS_ID_TOKEN_REQUEST_TOKEN: requestToken,
    },
    requestToken,
    asked,
    close: () => server.shutdown(),
  };
}

// ── Client credentials ──────────────────────────────────────────────────────────────────────────

Deno.test("token --grant client_credentials: one request with the client's secret, an entry apart from the person's, named by whoami", async () => {
  await withMock(async (mock) => {
    const person = await run(["login", "--issuer", mock.issuer, "--client-id", CONFIDENTIAL_CLIENT.id], {
      ...withSecret(),
      browser: (url) => scriptedBrowser(url),
    });
    assertEquals(person.code, EXIT.ok, person.stderr);
    try {
      const machine = await run(
        ["token", ...grantFlags(mock, "client_credentials")],
        withSecret({ home: person.home }),
      );
      assertEquals([machine.code, machine.stderr], [EXIT.ok, ""]);
      const token = machine.stdout.trim();
      assertEquals(mock.accessTokens.get(token)?.sub, CONFIDENTIAL_CLIENT.id, "a token for the client itself");
      const [request] = grantRequests(mock);
      assertEquals(request.form, { grant_type: "client_credentials" }, "no scope asked: the server's default");
      assertEquals(request.clientAuth, "client_secret_basic");

      // Two entries for one issuer and client: the person's token is still the person's.
      const own = await run(["token", "--issuer", mock.issuer, "--client-id", CONFIDENTIAL_CLIENT.id], {
        ...withSecret({ home: person.home }),
      });
      assertEquals(own.stdout, `${(await entryOf(person.home)).accessToken}\n`);
      assert(own.stdout !== machine.stdout);
      assertEquals((await entryOf(person.home, "client_credentials")).accessToken, token);

      const whoami = await run(
        ["whoami", ...grantFlags(mock, "client_credentials")],
        withSecret({ home: person.home }),
      );
      assertMatch(
        whoami.stdout,
        new RegExp(
          `^Token from ${mock.issuer} for the client cli-confidential \\(client credentials\\)\n` +
            "  client:  cli-confidential\n  grant:   client_credentials\n  scopes:  \\(none\\)\n" +
            "  token:   expires in 60 minutes \\(.*\\)\n  refresh: no; the grant runs again when the token is due\n$",
        ),
      );
      const json = await run(["whoami", "--json", ...grantFlags(mock, "client_credentials")], {
        ...withSecret({ home: person.home }),
      });
      const said = JSON.parse(json.stdout);
      assertEquals([said.logged_in, said.refreshable, said.grant, said.subject_token_from], [
        true,
        true,
        "client_credentials",
        null,
      ]);
      const all = await run(["whoami", "--all"], { home: person.home });
      assertStringIncludes(all.stdout, "(client_credentials)");
      assertStringIncludes(all.stdout, "alice@example.com");
      assertNoLeaks(machine, [SECRET], { stdoutMayHoldTokens: true });
    } finally {
      await cleanUp(person);
    }
  });
});

Deno.test("client credentials: --scope, --resource and --audience are sent; a due token is renewed by the grant, a failed renewal keeps a valid token", async () => {
  await withMock(async (mock) => {
    const flags = grantFlags(
      mock,
      "client_credentials",
      "--scope",
      "api.read",
      "--resource",
      "https://api.example/",
      "--audience",
      "https://api.example",
    );
    const first = await run(["token", ...flags], withSecret());
    try {
      assertEquals(first.code, EXIT.ok, first.stderr);
      assertEquals(grantRequests(mock)[0].form, {
        scope: "api.read",
        resource: "https://api.example/",
        audience: "https://api.example",
        grant_type: "client_credentials",
      });
      const cached = await run(["token", ...flags], withSecret({ home: first.home }));
      assertEquals([cached.stdout, grantRequests(mock).length], [first.stdout, 1], "the cached token, no request");

      // Due within the margin: the grant runs again (the clock moved 59.5 minutes on).
      const later = Date.now() + 3570_000;
      const renewed = await run(["token", ...flags], withSecret({ home: first.home, now: () => later }));
      assertEquals([renewed.code, renewed.stderr, grantRequests(mock).length], [EXIT.ok, "", 2]);
      assert(renewed.stdout !== first.stdout && mock.accessTokens.has(renewed.stdout.trim()));

      // The server fails the next renewal: the token, still valid, is used with a warning.
      mock.intercept = (record) =>
        record.form.grant_type === "client_credentials"
          ? Response.json({ error: "temporarily_unavailable" }, { status: 503 })
          : undefined;
      const evenLater = later + 3570_000;
      const kept = await run(["token", ...flags], withSecret({ home: first.home, now: () => evenLater }));
      assertEquals([kept.code, kept.stdout], [EXIT.ok, renewed.stdout]);
      assertMatch(
        kept.stderr,
        /^warning: Cannot renew the access token \(the server answered HTTP 503, a server error\); using the cached one, which expires in \d+ seconds; it is tried again at the next use\n$/,
      );
      // Expired: the failure is the answer.
      const expired = await run(["token", ...flags], withSecret({ home: first.home, now: () => evenLater + 60_000 }));
      assertEquals([expired.code, expired.stdout], [EXIT.failure, ""]);
      assertStringIncludes(
        expired.stderr,
        "error: Cannot get a token with the client's credentials: the server answered HTTP 503, a server error\n",
      );
    } finally {
      await cleanUp(first);
    }
  });
});

Deno.test("client credentials without the client's own credentials stop before any request", async () => {
  await withMock(async (mock) => {
    const result = await run(["token", ...grantFlags(mock, "client_credentials")]);
    assertEquals(result.code, EXIT.usage);
    assertEquals(
      result.stderr,
      "error: The client_credentials grant needs the client's own credentials\n" +
        'hint: set OAUTH_CLIENT_SECRET, or pass --client-key FILE (private_key_jwt) for client "cli-confidential"\n',
    );
    assertEquals(mock.requests, [], "nothing was asked of the server");
    await cleanUp(result);
  });
});

// ── JWT bearer and token exchange ───────────────────────────────────────────────────────────────

Deno.test("jwt-bearer sends the assertion from a file; token-exchange sends subject and actor tokens with their types, and keeps issued_token_type", async () => {
  await withMock(async (mock) => {
    const dir = await Deno.makeTempDir({ prefix: "oauth-login-sources-" });
    try {
      const assertion = jwt({ sub: "system:serviceaccount:ci:builder" }, mock.issuer);
      await Deno.writeTextFile(`${dir}/token`, `${assertion}\n`);
      const bearer = await run([
        "token",
        ...grantFlags(mock, "jwt-bearer", "--subject-token-from", `file:${dir}/token`),
      ], {
        ...withSecret(),
      });
      assertEquals([bearer.code, bearer.stderr], [EXIT.ok, ""]);
      assertEquals(grantRequests(mock)[0].form, { assertion, grant_type: JWT_BEARER });
      assertEquals(mock.accessTokens.get(bearer.stdout.trim())?.sub, "system:serviceaccount:ci:builder");

      const subject = jwt({ sub: "alice" }, mock.issuer);
      const actor = jwt({ sub: "ci-runner" }, mock.issuer);
      const exchange = await run([
        "token",
        "--format",
        "json",
        ...grantFlags(
          mock,
          "token-exchange",
          "--subject-token-from",
          "env:SUBJECT",
          "--actor-token-from",
          "-",
          "--actor-token-type",
          "id_token",
          "--requested-token-type",
          "access_token",
          "--audience",
          "https://api.example",
        ),
      ], withSecret({ home: bearer.home, env: { SUBJECT: subject }, stdin: new TextEncoder().encode(`${actor}\n`) }));
      assertEquals([exchange.code, exchange.stderr], [EXIT.ok, ""]);
      assertEquals(grantRequests(mock)[1].form, {
        audience: "https://api.example",
        subject_token: subject,
        subject_token_type: JWT_TYPE,
        requested_token_type: ACCESS_TOKEN_TYPE,
        actor_token: actor,
        actor_token_type: "urn:ietf:params:oauth:token-type:id_token",
        grant_type: TOKEN_EXCHANGE,
      });
      const cached = await entryOf(bearer.home, "token-exchange");
      assertEquals([cached.subjectTokenFrom, cached.actorTokenFrom, cached.issuedTokenType, cached.user], [
        "env:SUBJECT",
        "stdin",
        ACCESS_TOKEN_TYPE,
        "alice",
      ]);
      assertEquals(JSON.parse(exchange.stdout).token_type, "bearer");
      await cleanUp(bearer);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
});

Deno.test("issued_token_type is checked: missing, or not the type asked for, is refused and nothing is cached; N_A is never sent", async (t) => {
  const subject = (mock: ServedMock) => ({ env: { SUBJECT: jwt({ sub: "alice" }, mock.issuer) } });
  const exchange = (mock: ServedMock, ...extra: string[]) =>
    grantFlags(mock, "token-exchange", "--subject-token-from", "env:SUBJECT", ...extra);
  await t.step("no issued_token_type", async () => {
    await withMock(async (mock) => {
      mock.shapeToken = ({ issued_token_type: _, ...body }) => body;
      const result = await run(["token", ...exchange(mock)], withSecret(subject(mock)));
      assertEquals([result.code, result.stdout], [EXIT.failure, ""]);
      assertEquals(
        result.stderr,
        'error: Cannot exchange the subject token: the answer has no "issued_token_type" (RFC 8693 §2.2.1)\n' +
          "hint: the server's token exchange does not follow RFC 8693: report it to its operator\n",
      );
      assertEquals((await filesUnder(result.home)).filter((f) => f.endsWith(".json")), []);
      await cleanUp(result);
    });
  });
  await t.step("another type than the one asked for", async () => {
    await withMock(async (mock) => {
      mock.shapeToken = (body) => ({ ...body, issued_token_type: "urn:ietf:params:oauth:token-type:id_token" });
      const result = await run(
        ["token", ...exchange(mock, "--requested-token-type", "access_token")],
        withSecret(subject(mock)),
      );
      assertEquals(result.code, EXIT.failure);
      assertEquals(
        result.stderr,
        'error: Cannot exchange the subject token: the server issued "urn:ietf:params:oauth:token-type:id_token", not the "urn:ietf:params:oauth:token-type:access_token" asked for\n' +
          "hint: nothing was cached; ask for a type the server issues with --requested-token-type\n",
      );
      await cleanUp(result);
    });
  });
  await t.step("a token that is no access token (N_A): token prints it, fetch does not send it", async () => {
    await withMock(async (mock) => {
      const idToken = "urn:ietf:params:oauth:token-type:id_token";
      mock.shapeToken = (body) => ({ ...body, token_type: "N_A", issued_token_type: idToken });
      const flags = exchange(mock, "--requested-token-type", "id_token");
      const printed = await run(["token", ...flags], withSecret(subject(mock)));
      assertEquals([printed.code, printed.stderr], [EXIT.ok, ""]);
      const fetched = await run(
        ["fetch", ...flags, `${mock.issuer}/userinfo`],
        withSecret({
          ...subject(mock),
          home: printed.home,
        }),
      );
      assertEquals(fetched.code, EXIT.usage);
      assertEquals(
        fetched.stderr,
        `error: The cached token is a "${idToken}", not an access token (token_type N_A)\n` +
          'hint: it is printed by "oauth-login token" and given by "oauth-login exec", never sent by this tool\n',
      );
      assertEquals(mock.calls("userinfo"), []);
      await cleanUp(printed);
    });
  });
});

Deno.test("a token exchange that brings a refresh token is refreshed when due; a refused refresh token runs the exchange again", async () => {
  await withMock(async (mock) => {
    const env = { SUBJECT: jwt({ sub: "alice" }, mock.issuer) };
    const flags = grantFlags(
      mock,
      "token-exchange",
      "--subject-token-from",
      "env:SUBJECT",
      "--scope",
      "offline_access",
    );
    const first = await run(["token", ...flags], withSecret({ env }));
    try {
      assertEquals(first.code, EXIT.ok, first.stderr);
      assertEquals(typeof (await entryOf(first.home, "token-exchange")).refreshToken, "string");
      await expireAll(first.home);
      const refreshed = await run(["token", ...flags], withSecret({ home: first.home, env }));
      assertEquals([refreshed.code, refreshed.stderr], [EXIT.ok, ""]);
      assertEquals(grantRequests(mock).map((r) => r.form.grant_type), [TOKEN_EXCHANGE, "refresh_token"]);
      // The server forgets the refresh token: the exchange runs again, no person needed.
      mock.refreshTokens.clear();
      await expireAll(first.home);
      const again = await run(["token", ...flags], withSecret({ home: first.home, env }));
      assertEquals([again.code, again.stderr], [EXIT.ok, ""]);
      assertEquals(grantRequests(mock).map((r) => r.form.grant_type), [
        TOKEN_EXCHANGE,
        "refresh_token",
        "refresh_token",
        TOKEN_EXCHANGE,
      ]);
    } finally {
      await cleanUp(first);
    }
  });
});

// ── The sources ─────────────────────────────────────────────────────────────────────────────────

Deno.test("each source that is absent ends with one sentence naming what was looked for, before any request", async (t) => {
  const rows: [string, string, string, string][] = [
    [
      "github-actions",
      "",
      'ACTIONS_ID_TOKEN_REQUEST_URL is not set: this is not a GitHub Actions job with "permissions: id-token: write"',
      'add "permissions: id-token: write" to the workflow\'s job, or choose another --subject-token-from',
    ],
    [
      "github-actions",
      "url",
      'ACTIONS_ID_TOKEN_REQUEST_TOKEN is not set: this is not a GitHub Actions job with "permissions: id-token: write"',
      'add "permissions: id-token: write" to the workflow\'s job, or choose another --subject-token-from',
    ],
    [
      "gitlab:CI_ID_TOKEN",
      "",
      'CI_ID_TOKEN is not set: this is not a GitLab CI job whose "id_tokens:" block defines it',
      'add it to the job: id_tokens: { CI_ID_TOKEN: { aud: "ISSUER" } }',
    ],
    [
      "kubernetes:/nonexistent/serviceaccount/token",
      "",
      'There is no service account token at "/nonexistent/serviceaccount/token": this is not a Kubernetes pod with a projected service account token',
      'mount one (a serviceAccountToken projection with the audience "ISSUER") and name its path with kubernetes:PATH',
    ],
    [
      "file:/nonexistent/token",
      "",
      'There is no file "/nonexistent/token" (--subject-token-from file:/nonexistent/token)',
      "check the path",
    ],
    ["env:CI_TOKEN", "", "CI_TOKEN is not set (--subject-token-from env:CI_TOKEN)", "set it to the token"],
    ["-", "", "Nothing was read from stdin (--subject-token-from -)", "pipe the token into this command"],
  ];
  for (const [source, set, message, hint] of rows) {
    await t.step(`${source}${set ? " (only the URL set)" : ""}`, async () => {
      await withMock(async (mock) => {
        const env: Record<string, string> = set ? { ACTIONS_ID_TOKEN_REQUEST_URL: `${mock.issuer}/gh` } : {};
        const result = await run(
          ["token", ...grantFlags(mock, "token-exchange", "--subject-token-from", source)],
          withSecret({ env, stdin: new Uint8Array() }),
        );
        assertEquals([result.code, result.stdout], [EXIT.usage, ""]);
        assertEquals(result.stderr, `error: ${message}\nhint: ${hint.replace("ISSUER", mock.issuer)}\n`);
        assertEquals(mock.requests, [], "nothing was asked of any server");
        await cleanUp(result);
      });
    });
  }
  await t.step("- on a terminal", async () => {
    await withMock(async (mock) => {
      const result = await run(
        ["token", ...grantFlags(mock, "jwt-bearer", "--subject-token-from", "-")],
        withSecret({ interactive: true, stdin: new TextEncoder().encode("never read") }),
      );
      assertEquals([result.code, result.stderr], [
        EXIT.usage,
        "error: Stdin is a terminal, not a token (--subject-token-from -)\nhint: pipe the token into this command\n",
      ]);
      await cleanUp(result);
    });
  });
  await t.step("kubernetes: the default path, absent outside a pod", async () => {
    const path = "/var/run/secrets/kubernetes.io/serviceaccount/token";
    if (await Deno.stat(path).then(() => true, () => false)) return; // in a pod: nothing to show
    await withMock(async (mock) => {
      const result = await run(
        ["token", ...grantFlags(mock, "jwt-bearer", "--subject-token-from", "kubernetes")],
        withSecret(),
      );
      assertEquals(result.code, EXIT.usage);
      assertStringIncludes(result.stderr, `error: There is no service account token at "${path}"`);
      await cleanUp(result);
    });
  });
});

Deno.test("a subject token that expired, holds a line break or is empty is refused before it is sent", async (t) => {
  const now = Math.floor(Date.now() / 1000);
  const expired = (aud: string) => jwt({ sub: "alice", exp: now - 300 }, aud);
  const rows: [string, (aud: string) => string, RegExp][] = [
    [
      "expired",
      expired,
      /^error: The subject token from env:CI_TOKEN expired 5 minutes ago\nhint: give a token that has not expired\n$/,
    ],
    [
      "two lines",
      (aud) => `${jwt({ sub: "alice" }, aud)}\nextra`,
      /^error: The subject token from env:CI_TOKEN is not one token: it holds spaces or line breaks\nhint: the source must hold the token alone \(a JWT, say\), nothing else\n$/,
    ],
    ["only spaces", () => "   ", /^error: The subject token from env:CI_TOKEN is empty\n$/],
  ];
  for (const [name, make, expected] of rows) {
    await t.step(name, async () => {
      await withMock(async (mock) => {
        const token = make(mock.issuer);
        const result = await run(
          ["token", ...grantFlags(mock, "token-exchange", "--subject-token-from", "env:CI_TOKEN")],
          withSecret({ env: { CI_TOKEN: token } }),
        );
        assertEquals(result.code, EXIT.usage);
        assertMatch(result.stderr, expected);
        assertEquals(mock.requests, []);
        await cleanUp(result);
      });
    });
  }
  // A token file someone else could have put there or could change (outsider attack 2, finding 2): they could
  // put their own token there, and the tool would sign in as them. Owner, group, folder, and a link's target.
  const planted: [string, (dir: string) => Promise<string>, (dir: string) => string][] = [
    ["any user may change it", async (dir) => {
      await Deno.chmod(`${dir}/token`, 0o646);
      return `${dir}/token`;
    }, (dir) =>
      `error: The token file "${dir}/token" can be changed by other users\n` +
      `hint: make it writable by its owner alone: chmod go-w ${dir}/token\n`],
    ["its group may change it", async (dir) => {
      await Deno.chmod(`${dir}/token`, 0o664);
      return `${dir}/token`;
    }, (dir) =>
      `error: The token file "${dir}/token" can be changed by other users\n` +
      `hint: make it writable by its owner alone: chmod go-w ${dir}/token\n`],
    ["its folder anyone may change (without the sticky bit)", async (dir) => {
      await Deno.chmod(dir, 0o777);
      return `${dir}/token`;
    }, (dir) =>
      `error: The token file's folder "${dir}" can be changed by other users\n` +
      `hint: make it writable by its owner alone: chmod go-w ${dir}; or keep the token in a file of your own\n`],
    ["a link that leads to a file others may change", async (dir) => {
      await Deno.chmod(`${dir}/token`, 0o666);
      await Deno.symlink(`${dir}/token`, `${dir}/link`);
      return `${dir}/link`;
    }, (dir) =>
      `error: The token file "${dir}/link" can be changed by other users\n` +
      `hint: make it writable by its owner alone: chmod go-w ${dir}/link\n`],
  ];
  // Root can give a file away (`deno task test` grants sys uid, as the tool's own permission sets do).
  if (Deno.uid() === 0) {
    planted.push(["another user's file (uid 65534)", async (dir) => {
      await Deno.chmod(dir, 0o755);
      await Deno.chown(`${dir}/token`, 65534, 65534);
      return `${dir}/token`;
    }, (dir) =>
      `error: The token file "${dir}/token" belongs to another user\n` +
      "hint: keep the token in a file of your own\n"]);
  }
  for (const [name, plant, expected] of planted) {
    await t.step(`a token file is refused: ${name}`, async () => {
      await withMock(async (mock) => {
        const dir = await Deno.makeTempDir();
        await Deno.writeTextFile(`${dir}/token`, jwt({ sub: "mallory" }, mock.issuer));
        await Deno.chmod(`${dir}/token`, 0o644);
        const path = await plant(dir);
        const result = await run(
          ["token", ...grantFlags(mock, "jwt-bearer", "--subject-token-from", `file:${path}`)],
          withSecret(),
        );
        assertEquals([result.code, result.stderr], [EXIT.usage, expected(dir)]);
        assertEquals(mock.requests, [], "the planted token was not sent");
        await Deno.remove(dir, { recursive: true });
        await cleanUp(result);
      });
    });
  }
  await t.step(
    "a projected token (a link into a sticky folder, as the kubelet makes it, owned by root) is read",
    async () => {
      await withMock(async (mock) => {
        const dir = await Deno.makeTempDir();
        await Deno.mkdir(`${dir}/..data`, { mode: 0o755 });
        await Deno.writeTextFile(`${dir}/..data/token`, jwt({ sub: "pod" }, mock.issuer));
        await Deno.chmod(`${dir}/..data/token`, 0o644);
        await Deno.symlink(`${dir}/..data/token`, `${dir}/token`);
        await Deno.chmod(dir, 0o1777);
        const result = await run(
          ["token", ...grantFlags(mock, "jwt-bearer", "--subject-token-from", `kubernetes:${dir}/token`)],
          withSecret(),
        );
        assertEquals(result.code, EXIT.ok, result.stderr);
        assertEquals(grantRequests(mock).length, 1);
        await Deno.remove(dir, { recursive: true });
        await cleanUp(result);
      });
    },
  );
  await t.step("an expired Kubernetes token says the kubelet renews it", async () => {
    await withMock(async (mock) => {
      const dir = await Deno.makeTempDir();
      await Deno.writeTextFile(`${dir}/token`, expired(mock.issuer));
      const result = await run(
        ["token", ...grantFlags(mock, "jwt-bearer", "--subject-token-from", `kubernetes:${dir}/token`)],
        withSecret(),
      );
      assertEquals(
        result.stderr,
        `error: The subject token from kubernetes:${dir}/token expired 5 minutes ago\n` +
          "hint: the kubelet renews a projected token before it expires: check that the pod's token volume is mounted\n",
      );
      await Deno.remove(dir, { recursive: true });
      await cleanUp(result);
    });
  });
});

Deno.test("GitHub Actions: the job's bearer token goes to the URL GitHub sets, with the issuer (or --subject-audience) as audience, and only over https or to this machine", async (t) => {
  await t.step("the default audience is the issuer, and the ID token is exchanged", async () => {
    await withMock(async (mock) => {
      const github = githubActions();
      try {
        const result = await run(
          ["token", "--verbose", ...grantFlags(mock, "token-exchange", "--subject-token-from", "github-actions")],
          withSecret({ env: github.env }),
        );
        assertEquals(result.code, EXIT.ok, result.stderr);
        assertEquals(github.asked, [{ audience: mock.issuer, authorization: `bearer ${github.requestToken}` }]);
        const sent = grantRequests(mock)[0].form.subject_token;
        assertEquals(jwtClaims(sent)?.aud, mock.issuer);
        // The trace names each exchange, and shows no token: neither the job's nor the subject's.
        assertStringIncludes(result.stderr, "trace: > GET http://127.0.0.1:");
        assertStringIncludes(result.stderr, `subject_token=${sent.slice(0, 4)}…[redacted]`);
        assertNoLeaks(result, [github.requestToken, sent, SECRET], { stdoutMayHoldTokens: true });
        await cleanUp(result);
      } finally {
        await github.close();
      }
    });
  });
  await t.step("--subject-audience", async () => {
    await withMock(async (mock) => {
      const github = githubActions();
      mock.acceptSubject = (token) => jwtClaims(token)?.aud === "sts.example" ? "repo" : undefined;
      try {
        const result = await run([
          "token",
          ...grantFlags(
            mock,
            "jwt-bearer",
            "--subject-token-from",
            "github-actions",
            "--subject-audience",
            "sts.example",
          ),
        ], withSecret({ env: github.env }));
        assertEquals(result.code, EXIT.ok, result.stderr);
        assertEquals(github.asked[0].audience, "sts.example");
        await cleanUp(result);
      } finally {
        await github.close();
      }
    });
  });
  await t.step("a plain-http URL elsewhere gets no bearer token", async () => {
    await withMock(async (mock) => {
      const result = await run(
        ["token", ...grantFlags(mock, "token-exchange", "--subject-token-from", "github-actions")],
        withSecret({
          env: {
            ACTIONS_ID_TOKEN_REQUEST_URL: "http://pipelines.example/token?api-version=2.0",
            ACTIONS_ID_TOKEN_REQUEST_TOKEN: "ghs_secret_request_token",
          },
          fetch: () => Promise.reject(new Error("no request may be made")),
        }),
      );
      assertEquals(result.code, EXIT.usage);
      assertEquals(
        result.stderr,
        "error: ACTIONS_ID_TOKEN_REQUEST_URL is not an https URL, so its request token is not sent there (http://pipelines.example)\n" +
          "hint: GitHub Actions sets it itself; unset it outside a GitHub Actions job\n",
      );
      await cleanUp(result);
    });
  });
  await t.step("a job without the permission: GitHub answers 403", async () => {
    await withMock(async (mock) => {
      const github = githubActions(403);
      try {
        const result = await run(
          ["token", ...grantFlags(mock, "token-exchange", "--subject-token-from", "github-actions")],
          withSecret({ env: github.env }),
        );
        assertEquals(result.code, EXIT.failure);
        assertEquals(
          result.stderr,
          "error: GitHub Actions gave no ID token (HTTP 403)\n" +
            'hint: add "permissions: id-token: write" to the workflow\'s job, or choose another --subject-token-from\n',
        );
        assertEquals(grantRequests(mock), []);
        await cleanUp(result);
      } finally {
        await github.close();
      }
    });
  });
});

Deno.test("grant settings that do not fit are usage errors, each in one sentence", async (t) => {
  const rows: [string[], string][] = [
    [["--grant", "password"], 'error: The grant "password" is not one this tool makes\n'],
    [
      ["--grant", "token-exchange", "--subject-token-from", "vault:secret"],
      'error: The token source "vault:secret" (--subject-token-from) is not one this tool reads\n',
    ],
    [
      ["--grant", "token-exchange", "--subject-token-from", "gitlab"],
      'error: The token source "gitlab" (--subject-token-from) is not one this tool reads\nhint: name the variable',
    ],
    [
      ["--grant", "client_credentials", "--subject-token-from", "env:X"],
      'error: The flag "--subject-token-from" applies only to --grant jwt-bearer or token-exchange\n',
    ],
    [
      ["--subject-token-type", "jwt"],
      'error: The flag "--subject-token-type" applies only to --grant token-exchange\n',
    ],
    [
      ["--grant", "token-exchange", "--subject-token-from", "env:X", "--subject-audience", "sts"],
      'error: The flag "--subject-audience" applies only to a github-actions token source\n',
    ],
    [
      ["--grant", "token-exchange", "--subject-token-from", "-", "--actor-token-from", "-"],
      "error: The subject and the actor token cannot both be read from stdin (-)\n",
    ],
    [
      ["--grant", "token-exchange", "--subject-token-from", "env:X", "--subject-token-type", "jwt token"],
      'error: The token type "jwt token" (--subject-token-type) is not a URI\n',
    ],
    [
      ["--grant", "jwt-bearer"],
      "error: The jwt-bearer grant needs a subject token, and none is configured\nhint: pass --subject-token-from SOURCE",
    ],
    // A step-up (RFC 9470) is a person's stronger or newer sign-in: a grant has none to make.
    [
      ["--grant", "jwt-bearer", "--subject-token-from", "env:X", "--max-age", "0"],
      'error: The flag "--max-age" applies only when a person signs in, not to --grant jwt-bearer\nhint:',
    ],
    [
      ["--grant", "client_credentials", "--acr-values", "urn:example:mfa"],
      'error: The flag "--acr-values" applies only when a person signs in, not to --grant client_credentials\nhint:',
    ],
  ];
  await t.step("fetch -d @- with a token from stdin", async () => {
    const result = await run([
      "fetch",
      "--issuer",
      "https://idp.example",
      "--client-id",
      "c",
      "--grant",
      "jwt-bearer",
      "--subject-token-from",
      "-",
      "-d",
      "@-",
      "https://api.example/",
    ]);
    assertEquals(
      [result.code, result.stderr],
      [EXIT.usage, "error: Stdin cannot give both the request body (-d @-) and a token (-)\n"],
    );
    await cleanUp(result);
  });
  for (const [flags, expected] of rows) {
    await t.step(flags.join(" "), async () => {
      const result = await run(
        ["token", "--issuer", "https://idp.example", "--client-id", "c", ...flags],
        withSecret(),
      );
      assertEquals(result.code, EXIT.usage, result.stderr);
      assert(result.stderr.startsWith(expected), result.stderr);
      await cleanUp(result);
    });
  }
});

Deno.test("doctor for a grant: the grant, whether each token source is there, whether the server lists the grant; no browser or redirect checks", async () => {
  await withMock(async (mock) => {
    const result = await run(
      ["doctor", ...grantFlags(mock, "token-exchange", "--subject-token-from", "github-actions")],
      withSecret(),
    );
    assertEquals(result.code, EXIT.failure);
    const lines = result.stdout.split("\n");
    assert(lines.includes("ok    config     grant: token-exchange (from flag); no browser, no person"), result.stdout);
    assert(
      lines.includes(
        "fail  config     subject token: from github-actions (from flag): ACTIONS_ID_TOKEN_REQUEST_URL and ACTIONS_ID_TOKEN_REQUEST_TOKEN are not set",
      ),
      result.stdout,
    );
    assert(lines.includes("ok    discovery  the token-exchange grant is offered (or not listed)"), result.stdout);
    assert(lines.includes("ok    config     scope: none asked (the server's default)"), result.stdout);
    assert(!/^\w+ +(redirect|browser|client) /m.test(result.stdout), result.stdout);
    assertEquals(grantRequests(mock), [], "doctor asks for no token");
    await cleanUp(result);
  });
});

// ── What a project's .env may set ───────────────────────────────────────────────────────────────

Deno.test("a project's .env never names a token source or a CI token's audience, and the person's own sources never go to a server it chose", async (t) => {
  await t.step(".env sources and audience are ignored, with a warning, even with the person's own server", async () => {
    await withMock(async (mock) => {
      const secretFile = await Deno.makeTempFile();
      await Deno.writeTextFile(secretFile, jwt({ sub: "alice" }, mock.issuer));
      try {
        const own = ["--issuer", mock.issuer, "--client-id", CONFIDENTIAL_CLIENT.id, "--grant", "jwt-bearer"];
        const result = await run(["token", ...own], {
          ...withSecret(),
          cwd: REPO,
          files: {
            ".env": {
              OAUTH_SUBJECT_TOKEN_FROM: `file:${secretFile}`,
              OAUTH_SUBJECT_AUDIENCE: "https://sts.amazonaws.example",
            },
          },
        });
        assertEquals(result.code, EXIT.usage);
        assertEquals(
          result.stderr,
          'warning: The .env key "OAUTH_SUBJECT_TOKEN_FROM" is ignored: a project file cannot choose which of your tokens, files or variables this tool reads and sends; set it in the environment or pass --subject-token-from\n' +
            'warning: The .env key "OAUTH_SUBJECT_AUDIENCE" is ignored: a project file cannot choose whom your CI identity token is made for; set it in the environment or pass --subject-audience\n' +
            "error: The jwt-bearer grant needs a subject token, and none is configured\n" +
            "hint: pass --subject-token-from SOURCE (github-actions, gitlab:VAR, kubernetes[:PATH], file:PATH, env:NAME or - (stdin))\n",
        );
        assertEquals(mock.requests, [], "the file was neither read nor sent");
        await cleanUp(result);
      } finally {
        await Deno.remove(secretFile);
      }
    });
  });
  await t.step("the environment's source is withheld from a server the .env chose", async () => {
    await withMock(async (mock) => {
      const token = jwt({ sub: "alice" }, mock.issuer);
      const result = await run(["token", "--grant", "token-exchange"], {
        cwd: REPO,
        env: { OAUTH_SUBJECT_TOKEN_FROM: "env:CI_TOKEN", CI_TOKEN: token },
        files: {
          ".env": { OAUTH_ISSUER: mock.issuer, OAUTH_CLIENT_ID: CONFIDENTIAL_CLIENT.id, OAUTH_CLIENT_SECRET: SECRET },
        },
      });
      assertEquals(result.code, EXIT.usage);
      // The configuration stops the run before the note on who decided (as a withheld secret does).
      assertEquals(
        result.stderr,
        "error: The token-exchange grant needs a subject token, and none is configured\n" +
          "hint: set OAUTH_ISSUER in the environment too if your OAUTH_SUBJECT_TOKEN_FROM is meant for this server\n",
      );
      assertEquals(mock.requests, []);
      await cleanUp(result);
    });
  });
  await t.step("a source typed as a flag is used with the .env's server (it was typed for this run)", async () => {
    await withMock(async (mock) => {
      const result = await run(["token", "--grant", "token-exchange", "--subject-token-from", "env:CI_TOKEN"], {
        cwd: REPO,
        env: { CI_TOKEN: jwt({ sub: "alice" }, mock.issuer) },
        files: {
          ".env": { OAUTH_ISSUER: mock.issuer, OAUTH_CLIENT_ID: CONFIDENTIAL_CLIENT.id, OAUTH_CLIENT_SECRET: SECRET },
        },
      });
      assertEquals(result.code, EXIT.ok, result.stderr);
      assertEquals(grantRequests(mock).length, 1);
      await cleanUp(result);
    });
  });
  await t.step("--save-profile keeps the person's source and never the .env's", async () => {
    await withMock(async (mock) => {
      const result = await run(
        [
          "login",
          ...grantFlags(mock, "token-exchange", "--subject-token-from", "env:CI_TOKEN"),
          "--save-profile",
          "ci",
        ],
        withSecret({
          cwd: REPO,
          env: { CI_TOKEN: jwt({ sub: "alice" }, mock.issuer) },
          files: { ".env": { OAUTH_ACTOR_TOKEN_FROM: "file:/home/alice/.ssh/id_ed25519" } },
        }),
      );
      assertEquals(result.code, EXIT.ok, result.stderr);
      assertStringIncludes(result.stderr, `Got a token from ${mock.issuer} for alice (token exchange)\n`);
      const saved = await Deno.readTextFile(`${result.home}/config/oauth-login/config.toml`);
      assertStringIncludes(saved, 'subject_token_from = "env:CI_TOKEN"');
      assert(!saved.includes("actor_token_from") && !saved.includes(".ssh"), saved);
      assert(!grantRequests(mock)[0].form.actor_token, "no actor token was read");
      await cleanUp(result);
    });
  });
});

// ── exec, in-process ────────────────────────────────────────────────────────────────────────────

/** A stand-in for `Deps.runProgram` that records what it was asked and exits with `code`. */
function recordingProgram(code = 0) {
  type Options = { args: string[]; env: Record<string, string>; unset?: string[] };
  const ran: ({ command: string } & Options)[] = [];
  return {
    ran,
    runProgram: (command: string, options: Options) => {
      ran.push({ command, ...options });
      return Promise.resolve(code);
    },
  };
}

Deno.test("exec gives the program the token in OAUTH_ACCESS_TOKEN (or --env-name), its arguments as given, and returns its exit code", async () => {
  await withMock(async (mock) => {
    const program = recordingProgram(7);
    const result = await run(
      ["exec", ...grantFlags(mock, "client_credentials"), "--", "curl", "-H", "Authorization: Bearer $T", "--", "x"],
      withSecret({ runProgram: program.runProgram }),
    );
    assertEquals([result.code, result.stdout, result.stderr], [7, "", ""]);
    const token = (await entryOf(result.home, "client_credentials")).accessToken;
    assertEquals(program.ran, [{
      command: "curl",
      args: ["-H", "Authorization: Bearer $T", "--", "x"],
      env: { OAUTH_ACCESS_TOKEN: token },
      unset: ["OAUTH_CLIENT_SECRET"],
    }]);
    const named = await run(
      ["exec", "--env-name", "API_TOKEN", ...grantFlags(mock, "client_credentials"), "--", "env"],
      withSecret({ runProgram: program.runProgram, home: result.home }),
    );
    assertEquals(named.code, 7);
    assertEquals(program.ran[1].env, { API_TOKEN: token });
    assertEquals(grantRequests(mock).length, 1, "the cached token, renewed only when due");
    await cleanUp(result);
  });
});

Deno.test("exec's program gets the token, never the client secret or a variable a subject token was read from (outsider attack 2, finding 4)", async () => {
  await withMock(async (mock) => {
    const program = recordingProgram();
    const token = jwt({ sub: "ci" }, mock.issuer);
    const result = await run(
      ["exec", ...grantFlags(mock, "token-exchange", "--subject-token-from", "env:CI_TOKEN"), "--", "./deploy.sh"],
      withSecret({ env: { CI_TOKEN: token }, runProgram: program.runProgram }),
    );
    assertEquals(result.code, 0, result.stderr);
    assertEquals(program.ran[0].unset, ["OAUTH_CLIENT_SECRET", "CI_TOKEN"]);
    await cleanUp(result);
  });
  // The real edge leaves them out of the program's environment (HOME stands for any variable this process has).
  assert(Deno.env.get("HOME"), "the test process has HOME");
  const code = await realDeps().runProgram!("sh", {
    args: ["-c", 'test -n "$OAUTH_ACCESS_TOKEN" && test -z "$HOME"'],
    env: { OAUTH_ACCESS_TOKEN: "t" },
    unset: ["HOME"],
  });
  assertEquals(code, 0, "the program saw the token and not HOME");
});

Deno.test("exec: the command line's mistakes are usage errors, before any request", async (t) => {
  const rows: [string[], string][] = [
    [["exec"], 'error: No program to run\nhint: put it after --: "oauth-login exec -- COMMAND ARGS..."\n'],
    [["exec", "--"], 'error: No program to run\nhint: put it after --: "oauth-login exec -- COMMAND ARGS..."\n'],
    [
      ["exec", "curl"],
      'error: Unexpected argument "curl"\nhint: put -- before the program: "oauth-login exec -- curl ..."\n',
    ],
    [
      ["exec", "--env-name", "A-B", "--", "env"],
      'error: The variable name "A-B" is not one a program can read\nhint: use letters, digits and _, not starting with a digit\n',
    ],
    [
      ["token", "--", "env"],
      'error: Unexpected argument "--"\nhint: only "exec" takes a program after --; run "oauth-login token --help" to see the usage\n',
    ],
  ];
  for (const [args, expected] of rows) {
    await t.step(args.join(" "), async () => {
      const program = recordingProgram();
      const [command, ...rest] = args;
      const result = await run([command, "--issuer", "https://idp.example", "--client-id", "c", ...rest], {
        runProgram: program.runProgram,
        fetch: () => Promise.reject(new Error("no request may be made")),
      });
      assertEquals([result.code, result.stderr], [EXIT.usage, expected]);
      assertEquals(program.ran, []);
      await cleanUp(result);
    });
  }
});

Deno.test("exec refuses a DPoP-bound token before anything is renewed or run", async () => {
  await withMock(async (mock) => {
    const program = recordingProgram();
    const result = await run(["exec", ...grantFlags(mock, "client_credentials", "--dpop"), "--", "env"], {
      ...withSecret({ runProgram: program.runProgram }),
    });
    assertEquals(result.code, EXIT.usage);
    assertEquals(
      result.stderr,
      "error: The token is DPoP-bound, and a program cannot make DPoP proofs without its key\n" +
        'hint: use "oauth-login fetch" for each request, or "oauth-login token --format headers --url URL" for one; or log in without --dpop for a Bearer token\n',
    );
    assertEquals([program.ran, mock.requests], [[], []]);
    await cleanUp(result);
  });
});

Deno.test("exec --scope narrower than the login's: a token narrowed by refresh (RFC 6749 §6), or nothing run when the server will not narrow it", async (t) => {
  const wide = "openid profile offline_access read write";
  const login = async (mock: ServedMock) => {
    const result = await run(["login", "--issuer", mock.issuer, "--client-id", "cli-public", "--scope", wide], {
      browser: (url) => scriptedBrowser(url),
    });
    assertEquals(result.code, EXIT.ok, result.stderr);
    return result;
  };
  const exec = (mock: ServedMock, home: string, runProgram: RunOptions["runProgram"]) =>
    run(["exec", "--issuer", mock.issuer, "--client-id", "cli-public", "--scope", "read", "--", "env"], {
      home,
      runProgram,
    });
  await t.step(
    "narrowed: the program gets a token for read alone; the login keeps its token and the rotated refresh token",
    async () => {
      await withMock(async (mock) => {
        const signedIn = await login(mock);
        const before = await entryOf(signedIn.home);
        const program = recordingProgram();
        const result = await exec(mock, signedIn.home, program.runProgram);
        assertEquals([result.code, result.stderr], [EXIT.ok, ""]);
        const refresh = mock.calls("token").filter((r) => r.form.grant_type === "refresh_token");
        assertEquals(refresh.map((r) => r.form.scope), ["read"]);
        const given = program.ran[0].env.OAUTH_ACCESS_TOKEN;
        assertEquals(mock.accessTokens.get(given)?.scope, "read");
        const after = await entryOf(signedIn.home);
        assertEquals(after.accessToken, before.accessToken, "the login's own token is kept");
        assert(after.refreshToken !== before.refreshToken, "the rotated refresh token is saved");
        assertEquals(mock.refreshTokens.get(after.refreshToken!)?.scope, wide, "the new refresh token keeps the grant");
        await cleanUp(signedIn);
      }, { rotateRefreshTokens: true });
    },
  );
  await t.step("the server grants more than asked: nothing is run", async () => {
    await withMock(async (mock) => {
      const signedIn = await login(mock);
      mock.shapeToken = (body, record) => record.form.grant_type === "refresh_token" ? { ...body, scope: wide } : body;
      const program = recordingProgram();
      const result = await exec(mock, signedIn.home, program.runProgram);
      assertEquals(result.code, EXIT.failure);
      assertEquals(
        result.stderr,
        `error: Cannot narrow the login's token to "read": the server granted "${wide}" instead\n` +
          "hint: the program was not run; run without --scope to give the program the login's token as it is, or log in with that --scope\n",
      );
      assertEquals(program.ran, []);
      // The rotated refresh token was saved all the same: the login still refreshes.
      const token = await run(["token", "--issuer", mock.issuer, "--client-id", "cli-public", "--scope", wide], {
        home: signedIn.home,
        now: () => Date.now() + 7200_000,
      });
      assertEquals(token.code, EXIT.ok, token.stderr);
      await cleanUp(signedIn);
    }, { rotateRefreshTokens: true });
  });
  await t.step("the server refuses a narrower scope", async () => {
    await withMock(async (mock) => {
      const signedIn = await login(mock);
      mock.intercept = (record) =>
        record.form.grant_type === "refresh_token"
          ? Response.json({ error: "invalid_scope", error_description: "scope may not change" }, { status: 400 })
          : undefined;
      const program = recordingProgram();
      const result = await exec(mock, signedIn.home, program.runProgram);
      assertEquals(result.code, EXIT.failure);
      assertEquals(
        result.stderr,
        `error: Cannot narrow the login's token to "read": the server refused a narrower scope in a refresh\n` +
          "hint: run without --scope to give the program the login's token as it is, or log in with that --scope\n",
      );
      assertEquals(program.ran, []);
      await cleanUp(signedIn);
    });
  });
  await t.step("a login without a refresh token cannot be narrowed", async () => {
    await withMock(async (mock) => {
      mock.issueRefreshTokens = false;
      const signedIn = await login(mock);
      const program = recordingProgram();
      const result = await exec(mock, signedIn.home, program.runProgram);
      assertEquals(result.code, EXIT.usage);
      assertEquals(
        result.stderr,
        `error: Cannot narrow the login's token to "read": the login has no refresh token\n` +
          "hint: run without --scope to give the program the login's token as it is, or log in with that --scope\n",
      );
      await cleanUp(signedIn);
    });
  });
});

// ── Real processes ──────────────────────────────────────────────────────────────────────────────

const PERMISSIONS = ["--allow-net", "--allow-env", "--allow-read", "--allow-write", "--allow-run"];
const LOGIN_TS = new URL("../login.ts", import.meta.url).pathname;
const ROOT = new URL("../", import.meta.url).pathname;

/** `login.ts` as a process with these arguments, its cache in `dir`, stdout piped. */
function spawnTool(args: string[], dir: string, env: Record<string, string> = {}) {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "--quiet", ...PERMISSIONS, LOGIN_TS, ...args],
    cwd: dir,
    env: { NO_COLOR: "1", OAUTH_LOGIN_CACHE: `${dir}/cache`, OAUTH_CLIENT_SECRET: SECRET, ...env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
}

/** Reads a process's stdout until `text` has come (or it ends), then stops reading it. */
async function readUntil(stream: ReadableStream<Uint8Array>, text: string): Promise<string> {
  const reader = stream.getReader();
  const decoder = new TextDecoder();
  let seen = "";
  try {
    while (!seen.includes(text)) {
      const { value, done } = await reader.read();
      if (done) break;
      seen += decoder.decode(value, { stream: true });
    }
  } finally {
    await reader.cancel();
  }
  return seen;
}

Deno.test({
  name:
    "exec as a process: the token is in the program's environment and on no command line (its /proc), and its exit code is the tool's",
  ignore: Deno.build.os !== "linux",
  fn: async () => {
    await withMock(async (mock) => {
      const dir = await Deno.makeTempDir({ prefix: "oauth-login-exec-" });
      try {
        // The program reads its own /proc (Deno reads /proc only with --allow-all), and every process's command line.
        const script = 'printf %s "$OAUTH_ACCESS_TOKEN" > token; tr "\\0" "\\n" < /proc/$$/cmdline > cmdline; ' +
          'tr "\\0" "\\n" < /proc/$$/environ > environ; ' +
          'for f in /proc/[0-9]*/cmdline; do { tr "\\0" " " < "$f"; } 2>/dev/null; echo; done > all; exit 5';
        const child = spawnTool(["exec", ...grantFlags(mock, "client_credentials"), "--", "sh", "-c", script], dir);
        const output = await child.output();
        const stderr = new TextDecoder().decode(output.stderr);
        assertEquals([output.code, stderr], [5, ""]);
        const token = await Deno.readTextFile(`${dir}/token`);
        assert(mock.accessTokens.has(token), "the program got the token the server issued");
        assert((await Deno.readTextFile(`${dir}/environ`)).split("\n").includes(`OAUTH_ACCESS_TOKEN=${token}`));
        const cmdline = await Deno.readTextFile(`${dir}/cmdline`);
        const [program, flag] = cmdline.split("\n");
        assertEquals([program.replace(/^.*\//, ""), flag], ["sh", "-c"]);
        assert(!cmdline.includes(token), "not in the program's arguments");
        const all = await Deno.readTextFile(`${dir}/all`);
        assert(all.includes(LOGIN_TS), "the tool's own command line was read");
        assert(!all.includes(token.slice(0, 16)), "the token is on no process's command line");
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    });
  },
});

Deno.test({
  name: "exec as a process: SIGTERM and SIGINT reach the program, and a missing program exits 127",
  ignore: Deno.build.os !== "linux",
  fn: async (t) => {
    await withMock(async (mock) => {
      const dir = await Deno.makeTempDir({ prefix: "oauth-login-exec-" });
      try {
        for (const [signal, code] of [["SIGTERM", 42], ["SIGINT", 43]] as const) {
          await t.step(signal, async () => {
            const name = signal.slice(3);
            const script = `echo $$ > pid; trap 'echo ${name} > signal; exit ${code}' ${name}; echo ready; ` +
              "while :; do sleep 0.05; done";
            const child = spawnTool(["exec", ...grantFlags(mock, "client_credentials"), "--", "sh", "-c", script], dir);
            try {
              assertStringIncludes(await readUntil(child.stdout, "ready\n"), "ready\n");
              child.kill(signal);
              const [status, stderr] = await within(
                Promise.all([child.status, new Response(child.stderr).text()]),
                10_000,
                "the tool and its program ending after the signal",
              );
              assertEquals([status.code, stderr], [code, ""]);
              assertEquals(await Deno.readTextFile(`${dir}/signal`), `${name}\n`, "the program's own trap ran");
            } finally {
              // Should the signal not have reached it, the program would run on: end it here.
              const pid = Number(await Deno.readTextFile(`${dir}/pid`).catch(() => "0"));
              if (pid > 0) {
                try {
                  Deno.kill(pid, "SIGKILL");
                } catch { /* it has ended, as it should */ }
              }
            }
          });
        }
        await t.step("no such program", async () => {
          const child = spawnTool(["exec", ...grantFlags(mock, "client_credentials"), "--", "no-such-program-x1"], dir);
          const output = await child.output();
          assertEquals(output.code, EXIT.notFound);
          assertEquals(
            new TextDecoder().decode(output.stderr),
            'error: Cannot run "no-such-program-x1": there is no such program\n' +
              "hint: check its name, or give its path (it is looked for in PATH)\n",
          );
        });
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    });
  },
});

Deno.test({
  name: "deno task exec runs a program under its own permission set",
  ignore: Deno.build.os !== "linux",
  fn: async () => {
    await withMock(async (mock) => {
      const dir = await Deno.makeTempDir({ prefix: "oauth-login-exec-task-" });
      try {
        const output = await new Deno.Command(Deno.execPath(), {
          args: [
            "task",
            "-q",
            "exec",
            ...grantFlags(mock, "client_credentials"),
            "--",
            "sh",
            "-c",
            'test -n "$OAUTH_ACCESS_TOKEN"; exit 9',
          ],
          cwd: ROOT,
          env: { NO_COLOR: "1", OAUTH_LOGIN_CACHE: `${dir}/cache`, OAUTH_CLIENT_SECRET: SECRET },
          stdin: "null",
        }).output();
        assertEquals([output.code, new TextDecoder().decode(output.stderr)], [9, ""]);
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    });
  },
});

/** Each of the 64 processes is killed after this many seconds (a stuck lock would hold it for 60 s). */
const PROCESS_LIMIT_S = 45;

/** Starts `count` commands at once from one bash (cheap forks), each under `timeout`; their exit codes and outputs. */
const LAUNCHER = `dir=$1; count=$2; shift 2
for i in $(seq 1 "$count"); do
  ( timeout -s KILL ${PROCESS_LIMIT_S} "$@" >"$dir/out.$i" 2>"$dir/err.$i" </dev/null; echo $? >"$dir/code.$i" ) &
done
wait`;

Deno.test({
  name: "64 token processes with client credentials started at once make one request and print one token",
  ignore: Deno.build.os === "windows",
  fn: async () => {
    await withMock(async (mock) => {
      const dir = await Deno.makeTempDir({ prefix: "oauth-login-64-grant-" });
      try {
        // The server takes its time, so that the processes really wait for the one that asked.
        mock.intercept = async (record) => {
          if (record.form.grant_type === "client_credentials") await new Promise((r) => setTimeout(r, 500));
          return undefined;
        };
        const argv = [
          Deno.execPath(),
          "run",
          "--quiet",
          ...PERMISSIONS,
          LOGIN_TS,
          "token",
          ...grantFlags(mock, "client_credentials"),
        ];
        const launcher = await new Deno.Command("bash", {
          args: ["-c", LAUNCHER, "launcher", dir, "64", ...argv],
          env: { NO_COLOR: "1", LC_ALL: "C", OAUTH_LOGIN_CACHE: `${dir}/cache`, OAUTH_CLIENT_SECRET: SECRET },
          stdin: "null",
        }).output();
        assertEquals(launcher.code, 0, new TextDecoder().decode(launcher.stderr));
        const printed = new Set<string>();
        const waiting =
          /^(Waiting for another oauth-login process, which is refreshing this token \(Ctrl-C\s+cancels\)\n)?$/;
        for (let i = 1; i <= 64; i++) {
          const code = Number((await Deno.readTextFile(`${dir}/code.${i}`)).trim());
          const stderr = await Deno.readTextFile(`${dir}/err.${i}`);
          assertEquals(code, EXIT.ok, stderr);
          assertMatch(stderr, waiting);
          printed.add(await Deno.readTextFile(`${dir}/out.${i}`));
        }
        assertEquals(grantRequests(mock).length, 1, "exactly one client credentials request for 64 processes");
        assertEquals(printed.size, 1, "all 64 print the same token");
        assert(mock.accessTokens.has([...printed][0].trim()));
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    });
  },
});

Deno.test("deno.json's permission sets let the tool read the variables of logins without a person", async () => {
  const config = JSON.parse(await Deno.readTextFile(new URL("../deno.json", import.meta.url)));
  const grantVariables = [
    "OAUTH_GRANT",
    "OAUTH_SUBJECT_TOKEN_FROM",
    "OAUTH_SUBJECT_TOKEN_TYPE",
    "OAUTH_REQUESTED_TOKEN_TYPE",
    "OAUTH_SUBJECT_AUDIENCE",
    "OAUTH_ACTOR_TOKEN_FROM",
    "OAUTH_ACTOR_TOKEN_TYPE",
  ];
  for (const set of ["login", "cache", "whoami"]) {
    for (const name of grantVariables) assert(config.permissions[set].env.includes(name), `${set} lacks ${name}`);
  }
  for (const set of ["login", "cache"]) {
    for (const name of ["ACTIONS_ID_TOKEN_REQUEST_URL", "ACTIONS_ID_TOKEN_REQUEST_TOKEN"]) {
      assert(config.permissions[set].env.includes(name), `${set} lacks ${name}`);
    }
  }
  assertEquals(config.permissions.exec.run, true, "exec runs any program the person names");
  assertEquals(config.tasks.exec, "deno run -q -P=exec login.ts exec");
});
