import { assert, assertEquals, assertMatch, assertNotMatch, assertStringIncludes } from "./tests/assert.ts";
import { EXIT, fileStorage, type Storage, testing, VERSION } from "./login.ts";
const { openerCommand, openWithSystemBrowser, page, parseCli, parseIssuer, quickParse, sanitize } = testing;
import {
  type BrowserVisit,
  CONFIDENTIAL_CLIENT,
  PUBLIC_CLIENT,
  s256,
  scriptedBrowser,
  type ServedMock,
} from "./tests/mock_issuer.ts";

import {
  assertLoopbackOnly,
  assertPortClosed,
  exists,
  freePort,
  genuineCallback,
  grantOnlyOnce,
  portOf,
  type Run,
  run as boundedRun,
  type RunOptions as HarnessRunOptions,
  START_PATH,
  withMock,
} from "./tests/_harness.ts";

// ── Harness: the bounded run of tests/_harness.ts ───────────────────────────────────────────────

const temporaryDirs: string[] = [];
/** A temporary directory, removed when the test module ends. */
async function tempDir(): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "oauth-login-test-" });
  temporaryDirs.push(dir);
  return dir;
}
globalThis.addEventListener("unload", () => {
  for (const dir of temporaryDirs) Deno.removeSync(dir, { recursive: true });
});

interface RunOptions extends Omit<HarnessRunOptions, "storage"> {
  /** The token cache; by default `fileStorage` in the run's own temporary home. */
  storage?: Storage;
}

/**
 * `main(args)` through the shared bounded harness (a run that overruns fails in seconds instead of
 * hanging the suite), on a Linux desktop whose browser is the scripted one that approves.
 */
async function run(args: string[], options: RunOptions = {}): Promise<Run> {
  const { storage, ...rest } = options;
  const result = await boundedRun(args, {
    browser: (url) => scriptedBrowser(url),
    ...rest,
    storage: storage ? () => storage : undefined,
  });
  temporaryDirs.push(result.home);
  return result;
}

function flags(mock: ServedMock, client = PUBLIC_CLIENT, ...extra: string[]): string[] {
  return ["--issuer", mock.issuer, "--client-id", client.id, ...extra];
}

const ENV_CONFIDENTIAL = { OAUTH_CLIENT_SECRET: CONFIDENTIAL_CLIENT.secret! };

// ── The browser login ───────────────────────────────────────────────────────────────────────────

Deno.test("login() signs in a public client with PKCE over an ephemeral loopback redirect", async () => {
  await withMock(async (mock) => {
    const result = await run(flags(mock));
    assertEquals(result.code, EXIT.ok, result.stderr);
    assertEquals(result.stdout, "");
    assertStringIncludes(result.stderr, "Opening your browser to sign in at 127.0.0.1:");
    assertStringIncludes(result.stderr, "Logged in as alice@example.com\n");

    // The browser was given the short loopback address, which redirected to the authorization URL.
    assertEquals(result.opened.length, 1);
    assertMatch(result.opened[0], new RegExp(`^http://127\\.0\\.0\\.1:\\d+${START_PATH}$`));
    assertStringIncludes(result.stderr, `If it does not open, visit: ${result.opened[0]}\n`);

    const [authorize] = mock.calls("authorize");
    const [token] = mock.calls("token");
    assertEquals(authorize.query.code_challenge_method, "S256");
    assertEquals(await s256(token.form.code_verifier), authorize.query.code_challenge);
    assertEquals(token.form.redirect_uri, authorize.query.redirect_uri);
    assertMatch(authorize.query.redirect_uri, /^http:\/\/127\.0\.0\.1:\d+\/callback$/);
    assertEquals(new URL(authorize.query.redirect_uri).port, new URL(result.opened[0]).port);
    assert(authorize.query.state.length >= 22, "state carries at least 128 bits");
    assert(authorize.query.nonce.length >= 22, "a nonce is sent with openid");
    assertEquals(authorize.query.scope, "openid profile offline_access");
    assertEquals(token.clientAuth, "none");
    assertEquals(mock.calls("introspect").length, 0, "a public client does not introspect");

    // The page the browser ends on tells the truth, carries no token and is not cached.
    const visit = result.visit!;
    assertEquals(visit.status, 200);
    assertStringIncludes(visit.body, "Signed in as alice@example.com");
    assertEquals(visit.headers.get("cache-control"), "no-store");
    assertEquals(visit.headers.get("referrer-policy"), "no-referrer");
    assertStringIncludes(visit.headers.get("content-security-policy")!, "default-src 'none'");
    const [accessToken] = mock.accessTokens.keys();
    assertNotMatch(visit.body, new RegExp(accessToken));
    assertNotMatch(visit.body, /<script|<img|<link|href=/);
    await assertPortClosed(portOf(result.opened[0]));
  });
});

Deno.test("login() authenticates a confidential client as the metadata allows, and introspects", async (t) => {
  await t.step("client_secret_basic by default", async () => {
    await withMock(async (mock) => {
      const result = await run(flags(mock, CONFIDENTIAL_CLIENT), { env: ENV_CONFIDENTIAL });
      assertEquals(result.code, EXIT.ok, result.stderr);
      const [token] = mock.calls("token");
      assertEquals(token.clientAuth, "client_secret_basic");
      assertEquals(token.form.client_secret, undefined);
      assertEquals(mock.calls("introspect").length, 1);
      assertEquals(mock.calls("introspect")[0].clientAuth, "client_secret_basic");
      assertEquals(await s256(token.form.code_verifier), mock.calls("authorize")[0].query.code_challenge);
      assertStringIncludes(result.stderr, "Logged in as alice@example.com");
      assertNotMatch(result.stderr, /s3cret/);
    });
  });
  await t.step("client_secret_post when the metadata lists only that", async () => {
    await withMock(async (mock) => {
      mock.clients = [{ ...CONFIDENTIAL_CLIENT, auth: "client_secret_post" }];
      mock.metadata.token_endpoint_auth_methods_supported = ["client_secret_post"];
      const result = await run(flags(mock, CONFIDENTIAL_CLIENT), { env: ENV_CONFIDENTIAL });
      assertEquals(result.code, EXIT.ok, result.stderr);
      assertEquals(mock.calls("token")[0].clientAuth, "client_secret_post");
    });
  });
  await t.step("--client-auth overrides the metadata", async () => {
    await withMock(async (mock) => {
      mock.clients = [{ ...CONFIDENTIAL_CLIENT, auth: "client_secret_post" }];
      const result = await run(flags(mock, CONFIDENTIAL_CLIENT, "--client-auth", "client_secret_post"), {
        env: ENV_CONFIDENTIAL,
      });
      assertEquals(result.code, EXIT.ok, result.stderr);
      assertEquals(mock.calls("token")[0].clientAuth, "client_secret_post");
    });
  });
  await t.step("a wrong secret is invalid_client, exit 1", async () => {
    await withMock(async (mock) => {
      const result = await run(flags(mock, CONFIDENTIAL_CLIENT), { env: { OAUTH_CLIENT_SECRET: "wrong-secret" } });
      assertEquals(result.code, EXIT.failure);
      assertStringIncludes(
        result.stderr,
        'error: Cannot exchange the authorization code: the server answered "invalid_client"',
      );
      assertStringIncludes(
        result.stderr,
        "hint: the client secret from OAUTH_CLIENT_SECRET in the environment was sent (client_secret_basic): check that it is the current secret",
      );
      assertStringIncludes(result.visit!.body, "Sign-in failed");
    });
  });
});

Deno.test("login() listens exactly on a fixed redirect URI; localhost binds 127.0.0.1 and ::1", async () => {
  await withMock(async (mock) => {
    const port = freePort();
    const redirectUri = `http://localhost:${port}/authorization-code/callback`;
    mock.clients = [{ ...PUBLIC_CLIENT, redirectUris: [redirectUri] }];
    const reachable: string[] = [];
    const result = await run([...flags(mock), "--redirect-uri", redirectUri], {
      browser: async (url) => {
        for (const hostname of ["127.0.0.1", "::1"]) {
          const conn = await Deno.connect({ hostname, port });
          reachable.push(hostname);
          conn.close();
        }
        return scriptedBrowser(url);
      },
    });
    assertEquals(result.code, EXIT.ok, result.stderr);
    assertEquals(result.opened.length, 1);
    assertMatch(result.opened[0], new RegExp(`^http://localhost:${port}${START_PATH}$`));
    assertEquals(reachable, ["127.0.0.1", "::1"]);
    assertEquals(mock.calls("authorize")[0].query.redirect_uri, redirectUri);
    assertEquals(mock.calls("token")[0].form.redirect_uri, redirectUri);
    await assertPortClosed(port);
    await assertPortClosed(port, "::1");
  });
});

Deno.test("login() with --port listens on 127.0.0.1 at that port", async () => {
  await withMock(async (mock) => {
    const port = freePort();
    let beyond: string[] = [];
    const result = await run([...flags(mock), "--port", String(port)], {
      browser: async (start) => {
        const conn = await Deno.connect({ hostname: "127.0.0.1", port }); // listening there…
        conn.close();
        beyond = await assertLoopbackOnly(port); // …and on no other address of this machine
        return scriptedBrowser(start);
      },
    });
    assertEquals(result.code, EXIT.ok, result.stderr);
    assertEquals(result.opened.length, 1);
    assertMatch(result.opened[0], new RegExp(`^http://127\\.0\\.0\\.1:${port}${START_PATH}$`));
    assert(beyond.length > 0);
    assertEquals(mock.calls("authorize")[0].query.redirect_uri, `http://127.0.0.1:${port}/callback`);
    assertStringIncludes(result.visit!.body, "Signed in as alice@example.com");
    await assertPortClosed(port);
  });
});

Deno.test("login() ignores stray and forged requests and completes with the genuine callback", async () => {
  await withMock(async (mock) => {
    const answers: Record<string, number> = {};
    const result = await run(flags(mock), {
      browser: async (url) => {
        const base = new URL(url);
        const hit = async (path: string, init?: RequestInit & { host?: string }) => {
          const response = await fetch(new URL(path, base), init);
          await response.body?.cancel();
          answers[`${init?.method ?? "GET"} ${path}`] = response.status;
        };
        await hit("/favicon.ico");
        await hit("/callback?code=forged&state=wrong");
        await hit("/callback?code=forged");
        await hit("/callback?error=access_denied&state=wrong");
        await hit("/callback?code=x&state=a&state=b");
        await hit("/callback?code=x", { method: "POST" });
        // A page on another host (DNS rebinding) sends its own Host header, even with the right state.
        const start = await fetch(url, { redirect: "manual" });
        await start.body?.cancel();
        const state = new URL(start.headers.get("location")!).searchParams.get("state");
        const conn = await Deno.connect({ hostname: "127.0.0.1", port: Number(base.port) });
        await conn.write(
          new TextEncoder().encode(
            `GET /callback?code=forged&state=${state} HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n`,
          ),
        );
        const buffer = new Uint8Array(200);
        const n = await conn.read(buffer);
        conn.close();
        answers["foreign host"] = Number(new TextDecoder().decode(buffer.subarray(0, n ?? 0)).split(" ")[1]);
        return scriptedBrowser(url);
      },
    });
    assertEquals(result.code, EXIT.ok, result.stderr);
    assertEquals(answers, {
      "GET /favicon.ico": 404,
      "GET /callback?code=forged&state=wrong": 400,
      "GET /callback?code=forged": 400,
      "GET /callback?error=access_denied&state=wrong": 400,
      "GET /callback?code=x&state=a&state=b": 400,
      "POST /callback?code=x": 405,
      "foreign host": 400,
    });
    assertEquals(mock.calls("token").length, 1, "only the genuine code is exchanged");
    assertEquals(mock.calls("token")[0].form.code !== "forged", true);
  });
});

Deno.test("login() ends with exit 3 when consent is denied, on the page and in the terminal", async () => {
  await withMock(async (mock) => {
    mock.decision = "deny";
    const result = await run(flags(mock));
    assertEquals(result.code, EXIT.denied);
    assertStringIncludes(
      result.stderr,
      'error: Sign-in was declined: the server answered "access_denied" (The user denied the request)\n',
    );
    assertStringIncludes(result.visit!.body, "Sign-in cancelled");
    assertStringIncludes(result.visit!.body, "The user denied the request");
    assertEquals(mock.calls("token").length, 0);
  });
});

Deno.test("login() refuses a callback whose iss names another server (RFC 9207)", async () => {
  await withMock(async (mock) => {
    const result = await run(flags(mock), {
      browser: async (url) => {
        // Follow to the authorization server, then rewrite the redirect's iss as a mix-up attacker would.
        const start = await fetch(url, { redirect: "manual" });
        await start.body?.cancel();
        const authorize = await fetch(start.headers.get("location")!, { redirect: "manual" });
        await authorize.body?.cancel();
        const callback = new URL(authorize.headers.get("location")!);
        callback.searchParams.set("iss", "https://evil.example");
        return scriptedBrowser(callback.href);
      },
    });
    assertEquals(result.code, EXIT.failure);
    assertStringIncludes(
      result.stderr,
      'error: Cannot accept the sign-in: the server\'s answer is not valid (unexpected "iss"',
    );
    assertEquals(mock.calls("token").length, 0);
  });
});

Deno.test("login() times out with exit 5 and frees the port", async () => {
  await withMock(async (mock) => {
    const result = await run([...flags(mock), "--timeout", "0.2"], { browser: () => Promise.resolve(undefined) });
    assertEquals(result.code, EXIT.timedOut);
    assertStringIncludes(result.stderr, "error: No answer from the browser within 0.2 seconds\n");
    assertStringIncludes(result.stderr, "hint: run the login again");
    await assertPortClosed(portOf(result.opened[0]));
  });
});

Deno.test("login() stops with exit 130 on Ctrl-C while it waits for the browser, and frees the port", async () => {
  await withMock(async (mock) => {
    const controller = new AbortController();
    let callback: URL | undefined;
    const result = await run(flags(mock), {
      controller,
      browser: async (start) => {
        // The wait has begun: the callback server answers, and the person is at the sign-in page…
        callback = await genuineCallback(start);
        controller.abort(); // …when they press Ctrl-C in the terminal
        return undefined;
      },
    });
    assertEquals(result.code, EXIT.interrupted);
    assertStringIncludes(result.stderr, "error: Login cancelled\n");
    assert(result.ms < 2_000, `Ctrl-C took ${Math.round(result.ms)} ms to end the login`);
    await assertPortClosed(portOf(result.opened[0]));
    assertEquals(mock.calls("authorize").length, 1, "Ctrl-C came after the authorization request");
    assertEquals(mock.calls("token").length, 0);
    assert(callback !== undefined);
  });
});

Deno.test("login() names the busy port when the fixed port is taken", async () => {
  await withMock(async (mock) => {
    const busy = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = (busy.addr as Deno.NetAddr).port;
    try {
      const result = await run([...flags(mock), "--port", String(port)]);
      assertEquals(result.code, EXIT.usage);
      assertStringIncludes(result.stderr, `error: Port ${port} is already in use by another program\n`);
      assertEquals(result.opened, []);
      assertEquals(mock.calls("authorize").length, 0);
    } finally {
      busy.close();
    }
  });
});

Deno.test("login() keeps waiting when the browser cannot be opened and a person can open the address", async () => {
  await withMock(async (mock) => {
    const result = await run(flags(mock), { openFails: '"xdg-open" was not found', interactive: true });
    assertEquals(result.code, EXIT.ok, result.stderr);
    assertStringIncludes(
      result.stderr,
      'warning: Cannot open a browser ("xdg-open" was not found); open the address above yourself\n',
    );
    assertStringIncludes(result.stderr, "Logged in as alice@example.com");
  });
});

Deno.test("login --flow browser --no-browser prints the authorization address and opens nothing", async () => {
  await withMock(async (mock) => {
    let visit: Promise<BrowserVisit> | undefined;
    const result = await run([...flags(mock), "--flow", "browser", "--no-browser"], {
      // The person reads the address from the terminal and opens it by hand.
      onStderr: (text) => {
        const address = text.match(/\n {2}(http:\/\/\S+\/authorize\?\S+)\n/)?.[1];
        if (address) visit ??= scriptedBrowser(address);
      },
    });
    assertEquals(result.code, EXIT.ok, result.stderr);
    assertEquals(result.opened, []);
    assertMatch(result.stderr, /To sign in at 127\.0\.0\.1:\d+, open this address in a browser:\n\n {2}http/);
    assertNotMatch(result.stderr, /Opening your browser|device flow/);
    assertStringIncludes((await visit!).body, "Signed in as alice@example.com");
  });
});

Deno.test("login() reports the server's answer when the code exchange fails", async () => {
  await withMock(async (mock) => {
    mock.intercept = (record) =>
      record.path.endsWith("/token")
        ? new Response(JSON.stringify({ error: "invalid_grant", error_description: "code expired\x1b[2J" }), {
          status: 400,
          headers: { "content-type": "application/json" },
        })
        : undefined;
    const result = await run(flags(mock));
    assertEquals(result.code, EXIT.failure);
    assertStringIncludes(
      result.stderr,
      'error: Cannot exchange the authorization code: the server answered "invalid_grant" (code expired)\n',
    );
    assert(!result.stderr.includes("\x1b"), "no escape sequence reaches the terminal");
    assertEquals(result.visit!.status, 400);
    assertStringIncludes(result.visit!.body, "Sign-in failed");
    assertStringIncludes(result.visit!.body, "invalid_grant");
  });
});

// ── Discovery ───────────────────────────────────────────────────────────────────────────────────

Deno.test("discovery inserts the well-known path for an issuer with a path, and falls back to OpenID", async (t) => {
  await t.step("RFC 8414 path insertion", async () => {
    await withMock(async (mock) => {
      const result = await run(flags(mock));
      assertEquals(result.code, EXIT.ok, result.stderr);
      assertEquals(mock.requests[0].path, "/.well-known/oauth-authorization-server/oauth2/default");
      assertEquals(mock.requests.filter((r) => r.path.includes(".well-known")).length, 1, "fetched once");
    }, { path: "/oauth2/default" });
  });
  await t.step("OpenID discovery when RFC 8414 metadata is missing", async () => {
    await withMock(async (mock) => {
      const result = await run(flags(mock));
      assertEquals(result.code, EXIT.ok, result.stderr);
      assertEquals(mock.requests.slice(0, 2).map((r) => r.path), [
        "/.well-known/oauth-authorization-server/oauth2/default",
        "/oauth2/default/.well-known/openid-configuration",
      ]);
    }, { path: "/oauth2/default", discovery: "oidc" });
  });
  await t.step("the full metadata URL, as the seed tutorial gives it", async () => {
    await withMock(async (mock) => {
      const result = await run([
        "--issuer",
        `${mock.issuer}/.well-known/openid-configuration`,
        "--client-id",
        PUBLIC_CLIENT.id,
      ]);
      assertEquals(result.code, EXIT.ok, result.stderr);
      assertEquals(mock.requests[0].path, "/oauth2/default/.well-known/openid-configuration");
    }, { path: "/oauth2/default" });
  });
});

Deno.test("discovery refuses what it cannot trust before opening any browser", async (t) => {
  await t.step("an issuer mismatch", async () => {
    await withMock(async (mock) => {
      mock.metadata.issuer = `${mock.issuer}/other`;
      const result = await run(flags(mock));
      assertEquals(result.code, EXIT.usage);
      assertStringIncludes(
        result.stderr,
        `error: Issuer mismatch: asked for "${mock.issuer}", the server says "${mock.issuer}/other"\n`,
      );
      assertEquals(result.opened, []);
    });
  });
  await t.step("an http issuer that is not loopback", async () => {
    const result = await run(["--issuer", "http://login.example.com", "--client-id", "x"]);
    assertEquals(result.code, EXIT.usage);
    assertStringIncludes(result.stderr, 'error: The issuer "http://login.example.com/" must use https\n');
  });
  await t.step("no metadata (404)", async () => {
    await withMock(async (mock) => {
      const result = await run(["--issuer", `${mock.issuer}/nope`, "--client-id", "x"]);
      assertEquals(result.code, EXIT.usage);
      assertStringIncludes(
        result.stderr,
        `error: The server has no metadata for the issuer "${mock.issuer}/nope" (HTTP 404)\n`,
      );
      assertEquals(result.opened, []);
    });
  });
  await t.step("an authorization endpoint that is not https", async () => {
    await withMock(async (mock) => {
      mock.metadata.authorization_endpoint = "file:///etc/passwd";
      const result = await run(flags(mock));
      assertEquals(result.code, EXIT.failure);
      assertStringIncludes(
        result.stderr,
        `error: The server's "authorization_endpoint" is not an https URL: "file:///etc/passwd"\n`,
      );
      assertEquals(result.opened, []);
    });
  });
  await t.step("an unreachable issuer", async () => {
    const port = freePort();
    const result = await run(["--issuer", `http://127.0.0.1:${port}`, "--client-id", "x"]);
    assertEquals(result.code, EXIT.failure);
    assertStringIncludes(result.stderr, `error: Cannot reach 127.0.0.1:${port}:`);
    assertStringIncludes(result.stderr, "hint: check your network connection");
  });
  await t.step("a server that only offers plain PKCE", async () => {
    await withMock(async (mock) => {
      mock.metadata.code_challenge_methods_supported = ["plain"];
      const result = await run(flags(mock));
      assertEquals(result.code, EXIT.failure);
      assertStringIncludes(result.stderr, "error: The server does not support PKCE with S256");
    });
  });
});

Deno.test("the default scope adds offline_access only where the server offers it; --scope replaces it", async (t) => {
  await t.step("not offered", async () => {
    await withMock(async (mock) => {
      mock.metadata.scopes_supported = ["openid", "profile"];
      assertEquals((await run(flags(mock))).code, EXIT.ok);
      assertEquals(mock.calls("authorize")[0].query.scope, "openid profile");
    });
  });
  await t.step("--scope", async () => {
    await withMock(async (mock) => {
      assertEquals((await run([...flags(mock), "--scope", "api:read"])).code, EXIT.ok);
      assertEquals(mock.calls("authorize")[0].query.scope, "api:read");
      assertEquals(mock.calls("authorize")[0].query.nonce, undefined, "no nonce without openid");
    });
  });
});

// ── Configuration and output ────────────────────────────────────────────────────────────────────

Deno.test("configuration: flags win over the environment, the environment over .env", async () => {
  await withMock(async (mock) => {
    const other = "http://127.0.0.1:1/never";
    const result = await run(["--client-id", PUBLIC_CLIENT.id], {
      env: { OAUTH_ISSUER: mock.issuer, OAUTH_CLIENT_ID: "from-env" },
      files: { ".env": { OAUTH_ISSUER: other, OAUTH_CLIENT_ID: "from-dotenv", OAUTH_SCOPE: "openid" } },
    });
    assertEquals(result.code, EXIT.ok, result.stderr);
    assertEquals(mock.calls("authorize")[0].query.client_id, PUBLIC_CLIENT.id, "the flag wins");
    assertEquals(mock.calls("authorize")[0].query.scope, "openid", ".env fills what nothing else set");
  });
});

Deno.test("configuration errors are usage errors with a hint (exit 2)", async (t) => {
  const cases: [string[], string, Record<string, Record<string, string>>?][] = [
    [[], "error: No issuer is configured\nhint: pass --issuer URL or set OAUTH_ISSUER"],
    [["--issuer", "https://a.example"], "error: No client id is configured\n"],
    [["--issuer", "https://a.example", "--client-id", "x", "--port", "99999"], 'error: The port "99999" is not'],
    [["--issuer", "https://a.example", "--client-id", "x", "--timeout", "soon"], 'error: The timeout "soon" is not'],
    [
      ["--issuer", "https://a.example", "--client-id", "x", "--timeout", "2147484"],
      'error: The timeout "2147484" is not',
    ],
    [
      ["--issuer", "https://a.example", "--client-id", "x", "--redirect-uri", "http://192.168.1.2:8080/cb"],
      'error: The redirect URI "http://192.168.1.2:8080/cb" is not an http URL on a loopback host',
    ],
    [
      ["--issuer", "https://a.example", "--client-id", "x", "--client-auth", "magic"],
      'error: The client authentication "magic" is not supported',
    ],
    [
      ["--issuer", "https://a.example", "--client-id", "x", "--env-file", "missing.env"],
      'error: Cannot read the env file "missing.env"',
    ],
    [["--frobnicate"], 'error: Unknown flag "--frobnicate"\nhint: run with --help to see the flags\n'],
    [["fly"], 'error: Unknown command "fly"\n'],
  ];
  for (const [args, expected] of cases) {
    await t.step(args.join(" ") || "(nothing)", async () => {
      const result = await run(args);
      assertEquals(result.code, EXIT.usage);
      assertStringIncludes(result.stderr, expected);
      assertEquals(result.stdout, "");
    });
  }
});

Deno.test("--client-secret as a flag works but warns that other users can see it", async () => {
  await withMock(async (mock) => {
    const result = await run([...flags(mock, CONFIDENTIAL_CLIENT), "--client-secret", CONFIDENTIAL_CLIENT.secret!]);
    assertEquals(result.code, EXIT.ok, result.stderr);
    assertStringIncludes(result.stderr, "warning: --client-secret is visible to other local users");
    assertNotMatch(result.stderr, /s3cret/);
  });
});

Deno.test("--json prints one JSON object on stdout and messages stay on stderr", async () => {
  await withMock(async (mock) => {
    const result = await run([...flags(mock), "--json"]);
    assertEquals(result.code, EXIT.ok, result.stderr);
    const output = JSON.parse(result.stdout);
    assertEquals(result.stdout.trim().split("\n").length, 1);
    assertEquals(output.user, "alice@example.com");
    assertEquals(output.sub, "00u1alice");
    assertEquals(output.issuer, mock.issuer);
    assertEquals(mock.accessTokens.has(output.access_token), true);
    assertEquals(output.token_type, "bearer");
    assertMatch(output.expires_at, /^\d{4}-\d\d-\d\dT/);
    assertStringIncludes(result.stderr, "Logged in as alice@example.com");
  });
});

Deno.test("--verbose traces each exchange with every secret redacted", async () => {
  await withMock(async (mock) => {
    const result = await run([...flags(mock, CONFIDENTIAL_CLIENT), "--verbose", "--json"], { env: ENV_CONFIDENTIAL });
    assertEquals(result.code, EXIT.ok, result.stderr);
    const output = JSON.parse(result.stdout);
    const token = mock.calls("token")[0];
    assertStringIncludes(result.stderr, `trace: > POST ${mock.issuer}/token`);
    assertStringIncludes(result.stderr, "grant_type=authorization_code");
    assertStringIncludes(result.stderr, "trace: < 200");
    for (
      const secret of [
        CONFIDENTIAL_CLIENT.secret!,
        token.form.code,
        token.form.code_verifier,
        output.access_token,
        output.id_token,
      ]
    ) {
      assertNotMatch(result.stderr, new RegExp(secret.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")));
      // At most a short prefix shows.
      assertNotMatch(result.stderr, new RegExp(secret.slice(0, 12).replace(/[.*+?^${}()|[\]\\]/g, "\\$&")));
    }
    assertStringIncludes(result.stderr, "authorization=Basi…[redacted]");
  });
});

Deno.test("--help and --version print to stdout and exit 0", async () => {
  const help = await run(["--help"]);
  assertEquals(help.code, EXIT.ok);
  assertStringIncludes(help.stdout, "Usage: oauth-login");
  assertStringIncludes(help.stdout, "--redirect-uri");
  assertEquals(help.stderr, "");
  const version = await run(["--version"]);
  assertEquals(version.stdout, `oauth-login ${VERSION}\n`);
});

// ── Pure pieces ─────────────────────────────────────────────────────────────────────────────────

Deno.test("login() sends S256(code_verifier) as its code_challenge (RFC 7636 §4.2, checker per appendix B)", async () => {
  // The checker first: appendix B's verifier gives appendix B's challenge.
  assertEquals(
    await s256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
    "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
  );
  await withMock(async (mock) => {
    const result = await run(flags(mock));
    assertEquals(result.code, EXIT.ok, result.stderr);
    const [authorize] = mock.calls("authorize");
    const [token] = mock.calls("token");
    assertEquals(authorize.query.code_challenge_method, "S256");
    assertMatch(token.form.code_verifier, /^[A-Za-z0-9._~-]{43,128}$/, "RFC 7636 §4.1");
    assertEquals(authorize.query.code_challenge, await s256(token.form.code_verifier));
    assert(authorize.query.code_challenge !== token.form.code_verifier, "not the plain method");
  });
});

Deno.test("openerCommand() gives argv for each platform and never a shell", async (t) => {
  const url = "http://127.0.0.1:5555/";
  const env = (vars: Record<string, string>) => (name: string) => vars[name];
  await t.step("macOS", () => assertEquals(openerCommand(url, { os: "darwin", env: env({}) }), ["open", url]));
  await t.step("Linux", () => assertEquals(openerCommand(url, { os: "linux", env: env({}) }), ["xdg-open", url]));
  await t.step(
    "WSL",
    () => assertEquals(openerCommand(url, { os: "linux", env: env({}), wsl: true }), ["wslview", url]),
  );
  await t.step(
    "Windows",
    () =>
      assertEquals(openerCommand(url, { os: "windows", env: env({}) }), [
        "rundll32",
        "url.dll,FileProtocolHandler",
        url,
      ]),
  );
  await t.step(
    "$BROWSER",
    () =>
      assertEquals(openerCommand(url, { os: "linux", env: env({ BROWSER: "firefox --new-tab" }) }), [
        "firefox",
        "--new-tab",
        url,
      ]),
  );
  await t.step(
    "$BROWSER with %s",
    () =>
      assertEquals(openerCommand(url, { os: "linux", env: env({ BROWSER: "lynx %s -dump" }) }), ["lynx", url, "-dump"]),
  );
});

Deno.test("parseIssuer() derives the issuer from either form of metadata URL", () => {
  const okta = "https://dev-1.okta.com/oauth2/default";
  assertEquals(parseIssuer(`${okta}/.well-known/oauth-authorization-server`).issuer, okta);
  assertEquals(
    parseIssuer("https://dev-1.okta.com/.well-known/oauth-authorization-server/oauth2/default").issuer,
    okta,
  );
  assertEquals(parseIssuer(`${okta}/.well-known/openid-configuration`).issuer, okta);
  assertEquals(parseIssuer(okta), { issuer: okta });
});

Deno.test("sanitize() strips escape sequences and control characters; page() escapes HTML", async () => {
  assertEquals(sanitize("ok\x1b[31mred\x1b]0;title\x07\u202eevil\r\n"), "okred evil  ");
  const body = await page(400, "<b>", "<script>alert(1)</script>").text();
  assertNotMatch(body, /<script>/);
  assertStringIncludes(body, "&#60;script&#62;");
});

// ── The token cache and the token / whoami / logout commands ────────────────────────────────────

interface CacheRig {
  mock: ServedMock;
  storage: Storage;
  clock: { now: number };
  /** Runs the CLI against the mock with this cache and clock. */
  cli(args: string[], options?: RunOptions): Promise<Run>;
  entryPath(): Promise<string>;
  entry(): Promise<Record<string, unknown>>;
}

async function withCache(fn: (rig: CacheRig) => Promise<void>, options = {}): Promise<void> {
  await withMock(async (mock) => {
    const storage = fileStorage(await tempDir());
    const clock = { now: Date.now() };
    const entryPath = async () => {
      const [name] = await storage.list();
      return `${storage.dir}/${name}.json`;
    };
    await fn({
      mock,
      storage,
      clock,
      cli: (args, more) => run([...args, ...flags(mock)], { storage, now: () => clock.now, ...more }),
      entryPath,
      entry: async () => JSON.parse(await Deno.readTextFile(await entryPath())),
    });
  }, options);
}

function tokenRequests(mock: ServedMock, grant: string) {
  return mock.calls("token").filter((r) => r.form.grant_type === grant);
}

Deno.test("token prints the cached token without touching the issuer, and refreshes it once after expiry", async () => {
  await withCache(async ({ mock, clock, cli }) => {
    assertEquals((await cli(["login"])).code, EXIT.ok);
    const [firstToken] = mock.accessTokens.keys();
    const seen = mock.requests.length;

    const cached = await cli(["token"]);
    assertEquals(cached.code, EXIT.ok, cached.stderr);
    assertEquals(cached.stdout, `${firstToken}\n`);
    assertEquals(cached.stderr, "");
    assertEquals(mock.requests.length, seen, "no request reaches the issuer for a valid cached token");

    clock.now += 3600_000; // the token now expires within --min-ttl
    const refreshed = await cli(["token"]);
    assertEquals(refreshed.code, EXIT.ok, refreshed.stderr);
    assertEquals(tokenRequests(mock, "refresh_token").length, 1);
    const newToken = refreshed.stdout.trim();
    assert(newToken !== firstToken && mock.accessTokens.has(newToken));
    assertEquals(
      mock.requests.filter((r) => r.path.includes(".well-known")).length,
      1,
      "refresh reuses cached metadata",
    );

    const again = await cli(["token"]);
    assertEquals(again.stdout, `${newToken}\n`);
    assertEquals(tokenRequests(mock, "refresh_token").length, 1, "refreshed only once");
  });
});

Deno.test("token stores the rotated refresh token before handing out the new access token", async () => {
  await withCache(async ({ mock, clock, cli, entry, entryPath }) => {
    assertEquals((await cli(["login"])).code, EXIT.ok);
    const before = await entry();
    clock.now += 3600_000;
    const path = await entryPath();
    let onDiskWhenPrinted: Record<string, unknown> | undefined;
    const result = await cli(["token"], {
      onStdout: () => onDiskWhenPrinted = JSON.parse(Deno.readTextFileSync(path)),
    });
    assertEquals(onDiskWhenPrinted?.accessToken, result.stdout.trim(), "the new entry was on disk first");
    assert(onDiskWhenPrinted?.refreshToken !== before.refreshToken);
    assertEquals(result.code, EXIT.ok, result.stderr);
    const after = await entry();
    assert(after.refreshToken !== before.refreshToken);
    assertEquals(mock.refreshTokens.get(after.refreshToken as string)?.used, false);
    assertEquals(mock.refreshTokens.get(before.refreshToken as string)?.used, true);
    assertEquals(after.accessToken, result.stdout.trim());
  }, { rotateRefreshTokens: true });
});

Deno.test("token --min-ttl decides when to refresh", async () => {
  await withCache(async ({ mock, clock, cli }) => {
    assertEquals((await cli(["login"])).code, EXIT.ok);
    clock.now += 3000_000; // 10 minutes left
    assertEquals((await cli(["token"])).code, EXIT.ok);
    assertEquals(tokenRequests(mock, "refresh_token").length, 0);
    assertEquals((await cli(["token", "--min-ttl", "900"])).code, EXIT.ok);
    assertEquals(tokenRequests(mock, "refresh_token").length, 1);
  });
});

Deno.test("token without a terminal and without a usable token exits 4 with nothing on stdout", async (t) => {
  await t.step("nothing cached", async () => {
    await withCache(async ({ mock, cli }) => {
      const result = await cli(["token"]);
      assertEquals(result.code, EXIT.loginRequired);
      assertEquals(result.stdout, "");
      assertStringIncludes(result.stderr, `error: No cached token for ${mock.issuer}\n`);
      // The issuer and client id were flags: the suggested login repeats them, or it would find no issuer.
      assertStringIncludes(result.stderr, `hint: run "oauth-login login --issuer ${mock.issuer} --client-id `);
      assertEquals(result.opened, []);
      assertEquals(mock.requests.length, 0);
    });
  });
  await t.step("refresh answered with invalid_grant drops the entry", async () => {
    await withCache(async ({ mock, clock, cli, storage }) => {
      assertEquals((await cli(["login"])).code, EXIT.ok);
      mock.refreshTokens.clear(); // revoked at the server
      clock.now += 3600_000;
      const result = await cli(["token"]);
      assertEquals(result.code, EXIT.loginRequired);
      assertEquals(result.stdout, "");
      assertStringIncludes(
        result.stderr,
        'warning: The session has ended at the server (Cannot refresh the access token: the server answered "invalid_grant"',
      );
      assertStringIncludes(result.stderr, `error: The session has ended for ${mock.issuer}\n`);
      assertEquals(await storage.list(), []);
    });
  });
  await t.step("with --interactive it signs in instead", async () => {
    await withCache(async ({ mock, cli }) => {
      const result = await cli(["token", "--interactive"]);
      assertEquals(result.code, EXIT.ok, result.stderr);
      assertEquals(result.stdout, `${[...mock.accessTokens.keys()][0]}\n`);
      assertStringIncludes(result.stderr, "Logged in as alice@example.com");
    });
  });
});

Deno.test("token --json and --format exec-credential", async () => {
  await withCache(async ({ mock, cli }) => {
    assertEquals((await cli(["login"])).code, EXIT.ok);
    const [accessToken] = mock.accessTokens.keys();
    const json = JSON.parse((await cli(["token", "--json"])).stdout);
    assertEquals(Object.keys(json).sort(), ["access_token", "expires_at", "scope", "token_type"]);
    assertEquals(json.access_token, accessToken);
    assertEquals(json.scope, "openid profile offline_access");
    const exec = await cli(["token", "--format", "exec-credential"]);
    assertEquals(exec.code, EXIT.ok);
    const credential = JSON.parse(exec.stdout);
    assertEquals(credential.apiVersion, "client.authentication.k8s.io/v1");
    assertEquals(credential.kind, "ExecCredential");
    assertEquals(credential.status.token, accessToken);
    assertEquals(new Date(credential.status.expirationTimestamp).toISOString(), credential.status.expirationTimestamp);
    assertEquals(Object.keys(credential.status).sort(), ["expirationTimestamp", "token"]);
  });
});

Deno.test("the cache is a 0700 directory of 0600 files, and a file others can read is refused", async () => {
  await withCache(async ({ storage, cli, entryPath }) => {
    assertEquals((await cli(["login"])).code, EXIT.ok);
    assertEquals((await Deno.stat(storage.dir)).mode! & 0o777, 0o700);
    const path = await entryPath();
    assertEquals((await Deno.stat(path)).mode! & 0o777, 0o600);

    await Deno.chmod(path, 0o640);
    const result = await cli(["token"]);
    assertEquals(result.code, EXIT.usage);
    assertEquals(result.stdout, "");
    assertStringIncludes(result.stderr, `error: The token cache file "${path}" can be read by other users\n`);
    assertStringIncludes(result.stderr, `hint: make it private with: chmod 600 ${path}\n`);
  });
});

Deno.test("the cache directory is created 0700 even when its parents do not exist", async () => {
  await withMock(async (mock) => {
    const dir = `${await tempDir()}/a/b/oauth-login`;
    const result = await run(flags(mock), { storage: fileStorage(dir) });
    assertEquals(result.code, EXIT.ok, result.stderr);
    assertEquals((await Deno.stat(dir)).mode! & 0o777, 0o700);
  });
});

Deno.test("the confidential client's secret is never cached", async () => {
  await withMock(async (mock) => {
    const storage = fileStorage(await tempDir());
    const result = await run(flags(mock, CONFIDENTIAL_CLIENT), { env: ENV_CONFIDENTIAL, storage });
    assertEquals(result.code, EXIT.ok, result.stderr);
    const [name] = await storage.list();
    assertNotMatch(await Deno.readTextFile(`${storage.dir}/${name}.json`), /s3cret/);
  });
});

Deno.test("an atomic write killed before its rename leaves the previous entry intact", async () => {
  const dir = await tempDir();
  const storage = fileStorage(dir);
  const previous = JSON.stringify({ version: 1, note: "previous" });
  await storage.write("entry.json", previous);
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-read",
      "--allow-write",
      "tests/fixtures/interrupted_write.ts",
      dir,
      "entry.json",
      "x".repeat(100_000),
    ],
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const reader = child.stdout.getReader();
  const { value } = await reader.read();
  assertEquals(new TextDecoder().decode(value).trim(), "ready");
  child.kill("SIGKILL");
  reader.releaseLock();
  await child.stdout.cancel();
  assertEquals((await child.status).signal, "SIGKILL");
  assertEquals(await Deno.readTextFile(`${dir}/entry.json`), previous);
  assertEquals((await Deno.stat(`${dir}/entry.json`)).mode! & 0o777, 0o600);
});

Deno.test("a corrupt cache entry is a warning and leads to a fresh login, not a crash", async (t) => {
  const noMetadata = (entry: Record<string, unknown>) => JSON.stringify({ ...entry, expiresAt: 0, metadata: {} });
  for (
    const garbage of ['{"', "[]", '{"version":1,"accessToken":42}', "\u0000\u0001binary", '{"version":99}', noMetadata]
  ) {
    await t.step(
      typeof garbage === "string" ? JSON.stringify(garbage) : "an expired entry without metadata",
      async () => {
        await withCache(async ({ mock, cli, storage, entryPath }) => {
          assertEquals((await cli(["login"])).code, EXIT.ok);
          const path = await entryPath();
          const text = typeof garbage === "string" ? garbage : garbage(JSON.parse(await Deno.readTextFile(path)));
          await Deno.writeTextFile(path, text);
          const result = await cli(["token"], { interactive: true });
          assertEquals(result.code, EXIT.ok, result.stderr);
          assertStringIncludes(
            result.stderr,
            `warning: The cached token at "${path}" is unreadable or not for this client`,
          );
          assertEquals(result.stdout, `${[...mock.accessTokens.keys()][1]}\n`);
          assertEquals((await storage.list()).length, 1);
          assertEquals(typeof JSON.parse(await Deno.readTextFile(path)).accessToken, "string", "replaced by the login");
        });
      },
    );
  }
});

Deno.test("whoami shows who is logged in, and exits 4 when nobody is", async () => {
  await withCache(async ({ mock, clock, cli }) => {
    const nobody = await cli(["whoami"]);
    assertEquals(nobody.code, EXIT.loginRequired);
    assertStringIncludes(nobody.stderr, "error: Not logged in for");
    assertEquals(nobody.stdout, "");

    assertEquals((await cli(["login"])).code, EXIT.ok);
    const seen = mock.requests.length;
    const text = await cli(["status"]);
    assertEquals(text.code, EXIT.ok);
    assertStringIncludes(text.stdout, `Logged in to ${mock.issuer} as alice@example.com\n`);
    assertStringIncludes(text.stdout, "  scopes:  openid profile offline_access\n");
    assertMatch(text.stdout, / {2}token: {3}expires in 60 minutes \(\d{4}-/);
    const json = JSON.parse((await cli(["whoami", "--json"])).stdout);
    assertEquals(json.user, "alice@example.com");
    assertEquals(json.expired, false);
    assertEquals(json.refreshable, true);
    assertEquals(mock.requests.length, seen, "whoami makes no request");

    clock.now += 2 * 3600_000;
    const expired = await cli(["whoami"]);
    assertEquals(expired.code, EXIT.ok, "an expired but refreshable token counts as logged in");
    assertStringIncludes(expired.stdout, "  token:   expired 60 minutes ago; it will be refreshed when next used\n");
  });
});

Deno.test("logout revokes the refresh and access tokens at the server and removes the entry", async () => {
  await withCache(async ({ mock, cli, entry, storage }) => {
    assertEquals((await cli(["login"])).code, EXIT.ok);
    const { refreshToken, accessToken } = await entry();
    const result = await cli(["logout"]);
    assertEquals(result.code, EXIT.ok, result.stderr);
    assertStringIncludes(result.stderr, `Logged out of ${mock.issuer}\n`);
    assertEquals(mock.revoked, [refreshToken, accessToken]);
    assertEquals(mock.calls("revoke").map((r) => r.form.token_type_hint), ["refresh_token", "access_token"]);
    assertEquals(await storage.list(), []);
    const again = await cli(["logout"]);
    assertEquals(again.code, EXIT.ok);
    assertStringIncludes(again.stderr, "nothing to do");
  });
});

Deno.test("logout removes the entry even when the revocation fails, and says so (exit 1)", async () => {
  await withCache(async ({ mock, cli, storage }) => {
    assertEquals((await cli(["login"])).code, EXIT.ok);
    mock.intercept = (record) =>
      record.path.endsWith("/revoke")
        ? new Response("busy", { status: 503, headers: { "retry-after": "2" } })
        : undefined;
    const result = await cli(["logout"]);
    assertEquals(result.code, EXIT.failure);
    assertStringIncludes(result.stderr, "warning: Cannot revoke the refresh token: the server answered HTTP 503");
    assertStringIncludes(
      result.stderr,
      "error: The server could not confirm the revocation; the tokens may stay valid",
    );
    assertEquals(await storage.list(), []);
  });
});

Deno.test("logout --all clears every entry", async () => {
  await withCache(async ({ mock, cli, storage }) => {
    assertEquals((await cli(["login"])).code, EXIT.ok);
    assertEquals((await cli(["login", "--scope", "openid"])).code, EXIT.ok);
    assertEquals((await storage.list()).length, 2, "one entry per scope");
    const result = await run(["logout", "--all"], { storage });
    assertEquals(result.code, EXIT.ok, result.stderr);
    assertEquals(await storage.list(), []);
    assertEquals(mock.calls("revoke").length, 3, "two tokens, plus the access token of the entry without refresh");
  });
});

Deno.test("a login without a refresh token says in one line what to try", async (t) => {
  await t.step("offline_access not asked for", async () => {
    await withCache(async ({ cli }) => {
      const result = await cli(["login", "--scope", "openid profile"]);
      assertStringIncludes(result.stderr, "note: The server issued no refresh token");
      assertStringIncludes(result.stderr, "adding offline_access to --scope");
    });
  });
  await t.step("offline_access asked for but not granted", async () => {
    await withCache(async ({ mock, cli }) => {
      mock.issueRefreshTokens = false;
      const result = await cli(["login"]);
      assertEquals(result.code, EXIT.ok, result.stderr);
      // A strict OpenID server drops offline_access without prompt=consent (OpenID Connect Core §11): two lines say so.
      assertStringIncludes(
        result.stderr,
        "warning: The server did not grant offline_access, so it issued no refresh token\n" +
          "note: Log in with --prompt consent to get one (strict OpenID servers need it)\n",
      );
    });
  });
});

Deno.test("--prompt and --param reach the authorization request; resource keys the cache", async () => {
  await withCache(async ({ mock, cli, storage }) => {
    const result = await cli([
      "login",
      "--prompt",
      "consent",
      "--param",
      "audience=api://x",
      "--param",
      "login_hint=a@b.c",
    ]);
    assertEquals(result.code, EXIT.ok, result.stderr);
    const { query } = mock.calls("authorize")[0];
    assertEquals([query.prompt, query.audience, query.login_hint], ["consent", "api://x", "a@b.c"]);
    const other = await cli(["token", "--param", "audience=api://y"]);
    assertEquals(other.code, EXIT.loginRequired, "another audience is another cache entry");
    assertEquals((await storage.list()).length, 1);
    const refused = await cli(["login", "--param", "state=mine"]);
    assertEquals(refused.code, EXIT.usage);
    assertStringIncludes(refused.stderr, 'error: The parameter "state" is set by the tool and cannot be overridden');
  });
});

Deno.test("each command has its own --help; flags of other commands are usage errors", async () => {
  for (const command of ["login", "token", "whoami", "logout"]) {
    const help = await run([command, "--help"]);
    assertEquals(help.code, EXIT.ok);
    assertStringIncludes(help.stdout, `Usage: oauth-login ${command}`);
  }
  const misplaced = await run(["whoami", "--min-ttl", "5"]);
  assertEquals(misplaced.code, EXIT.usage);
  assertStringIncludes(misplaced.stderr, 'error: The flag "--min-ttl" does not apply to "whoami"');
});

// ── The command line, as a process ──────────────────────────────────────────────────────────────

const PERMISSIONS = ["--allow-net", "--allow-env", "--allow-read", "--allow-write", "--allow-run"];

/** Runs `login.ts` as its own process, as a script or kubectl would. */
async function spawnCli(args: string[], env: Record<string, string> = {}, cwd?: string) {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--quiet", ...PERMISSIONS, new URL("./login.ts", import.meta.url).pathname, ...args],
    env: { NO_COLOR: "1", OAUTH_TOKEN_STORAGE: "file", ...env },
    cwd,
    stdin: "null",
  }).output();
  const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
  return { code: output.code, stdout: decode(output.stdout), stderr: decode(output.stderr) };
}

/** The text of a file another process writes; waits for it to appear (at most about 10 s). */
async function waitForFile(path: string): Promise<string> {
  for (let attempt = 0; attempt < 500; attempt++) {
    try {
      const text = await Deno.readTextFile(path);
      if (text.endsWith("\n")) return text;
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error(`${path} was never written`);
}

Deno.test("a login process ends once logged in, without waiting for a browser that stays open", async () => {
  await withMock(async (mock) => {
    const dir = await tempDir();
    const fixture = new URL("./tests/fixtures/lingering_browser.ts", import.meta.url).pathname;
    const browser = [
      Deno.execPath(),
      "run",
      "--quiet",
      "--allow-net=127.0.0.1",
      "--allow-env",
      "--allow-write",
      fixture,
    ];
    const result = await spawnCli(["login", ...flags(mock), "--timeout", "30"], {
      BROWSER: browser.join(" "),
      LINGERING_BROWSER: `${dir}/browser`,
      OAUTH_LOGIN_CACHE: `${dir}/cache`,
    });
    assertEquals(result.code, EXIT.ok, result.stderr);
    assertStringIncludes(result.stderr, "Logged in as alice@example.com");
    const [pid, status] = (await waitForFile(`${dir}/browser`)).trim().split(" ");
    assertEquals(status, "200", "the browser reached the success page");
    // The process ended without waiting for the browser, nor for the opener's 10 s limit.
    assertEquals(await exists(`${dir}/browser.lingered`), false, "the login waited for the browser");
    Deno.kill(Number(pid), "SIGKILL"); // throws if the browser had already exited
  });
});

Deno.test("eight token processes started together refresh exactly once and print the same token", async () => {
  await withCache(async ({ mock, storage, cli, entry, entryPath }) => {
    assertEquals((await cli(["login"])).code, EXIT.ok);
    const expired = { ...await entry(), expiresAt: Date.now() - 1000 };
    await storage.write((await entryPath()).split("/").pop()!, JSON.stringify(expired));
    // The server takes a moment to answer a refresh, so that the processes really overlap.
    mock.intercept = async (record) => {
      if (record.form.grant_type === "refresh_token") await new Promise((r) => setTimeout(r, 150));
      return undefined;
    };
    const results = await Promise.all(
      Array.from({ length: 8 }, () => spawnCli(["token", ...flags(mock)], { OAUTH_LOGIN_CACHE: storage.dir })),
    );
    for (const result of results) assertEquals(result.code, EXIT.ok, result.stderr);
    assertEquals(tokenRequests(mock, "refresh_token").length, 1, "one refresh for eight processes");
    const printed = new Set(results.map((r) => r.stdout));
    assertEquals(printed.size, 1);
    const [token] = printed;
    assert(mock.accessTokens.has(token.trim()), "the printed token is valid at the server");
    assertEquals((await entry()).accessToken, token.trim());
    assertEquals(mock.refreshTokens.get((await entry()).refreshToken as string)?.used, false, "the grant is alive");
  }, { rotateRefreshTokens: true });
});

Deno.test("the CLI contract: --help on stdout with 0, an unknown flag 2, token while logged out 4", async () => {
  const help = await spawnCli(["--help"]);
  assertEquals(help.code, EXIT.ok);
  assertStringIncludes(help.stdout, "Usage: oauth-login [COMMAND] [flags]");
  assertEquals(help.stderr, "");

  const unknown = await spawnCli(["--bogus"]);
  assertEquals(unknown.code, EXIT.usage);
  assertEquals(unknown.stdout, "");
  assertEquals(unknown.stderr, 'error: Unknown flag "--bogus"\nhint: run with --help to see the flags\n');

  const cache = await tempDir();
  const loggedOut = await spawnCli(["token", "--issuer", "https://login.example.com", "--client-id", "x"], {
    OAUTH_LOGIN_CACHE: cache,
  });
  assertEquals(loggedOut.code, EXIT.loginRequired);
  assertEquals(loggedOut.stdout, "");
  assertStringIncludes(loggedOut.stderr, "error: No cached token for https://login.example.com\n");
});

Deno.test("the CLI reads .env with process.loadEnvFile; the environment and flags win over it", async () => {
  await withMock(async (mock) => {
    const dir = await tempDir();
    const cache = await tempDir();
    // A login for (issuer, cli-public, default scope), so `token` can answer from the cache.
    assertEquals((await run(flags(mock), { storage: fileStorage(cache) })).code, EXIT.ok);
    const [token] = mock.accessTokens.keys();
    await Deno.writeTextFile(`${dir}/.env`, `# settings\nOAUTH_ISSUER="${mock.issuer}"\nOAUTH_CLIENT_ID=from-dotenv\n`);
    const env = { OAUTH_LOGIN_CACHE: cache };

    const dotenvOnly = await spawnCli(["whoami"], env, dir);
    assertEquals(dotenvOnly.code, EXIT.loginRequired, "client from-dotenv has no entry");
    assertStringIncludes(dotenvOnly.stderr, `error: Not logged in for ${mock.issuer}\n`, "the issuer came from .env");

    const envWins = await spawnCli(["token"], { ...env, OAUTH_CLIENT_ID: PUBLIC_CLIENT.id }, dir);
    assertEquals(envWins.code, EXIT.ok, envWins.stderr);
    assertEquals(envWins.stdout, `${token}\n`);

    const flagWins = await spawnCli(
      ["token", "--client-id", "other"],
      { ...env, OAUTH_CLIENT_ID: PUBLIC_CLIENT.id },
      dir,
    );
    assertEquals(flagWins.code, EXIT.loginRequired, "the flag's client has no entry");
    assertEquals(flagWins.stdout, "");
  });
});

Deno.test("login() names the person from the ID token when introspection gives no username", async () => {
  await withMock(async (mock) => {
    mock.intercept = (record) =>
      record.path.endsWith("/introspect")
        ? Response.json({ active: true, sub: mock.user.sub })
        : record.path.endsWith("/userinfo")
        ? Response.json({ sub: mock.user.sub, preferred_username: "named-by-userinfo" })
        : undefined;
    const result = await run(flags(mock, CONFIDENTIAL_CLIENT), { env: ENV_CONFIDENTIAL });
    assertEquals(result.code, EXIT.ok, result.stderr);
    assertEquals(mock.calls("introspect").length, 1);
    assertEquals(mock.calls("userinfo").length, 0, "the ID token named the person");
    assertStringIncludes(result.stderr, "Logged in as alice@example.com\n");
  });
});

Deno.test("login() warns when the server grants fewer scopes than asked", async () => {
  await withMock(async (mock) => {
    const result = await run([...flags(mock), "--scope", "openid profile api:write"], {
      browser: (url) => scriptedBrowser(url),
    });
    assertEquals(result.code, EXIT.ok, result.stderr);
    assertEquals(
      result.stderr.includes("warning: The server did not grant"),
      false,
      "the mock grants what it is asked",
    );
    grantOnlyOnce(mock, "openid profile");
    const narrower = await run([...flags(mock), "--scope", "openid profile api:write"]);
    assertEquals(narrower.code, EXIT.ok, narrower.stderr);
    assertStringIncludes(narrower.stderr, "warning: The server did not grant api:write\n");
  });
});

Deno.test("a server that accepts the connection and never answers times out with a clear sentence", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  const held: Deno.Conn[] = [];
  const accepting = (async () => {
    for await (const conn of listener) held.push(conn); // read nothing, answer nothing
  })();
  try {
    const result = await run(["--issuer", `http://127.0.0.1:${port}`, "--client-id", "x"], { httpTimeoutMs: 100 });
    assertEquals(result.code, EXIT.failure);
    assertStringIncludes(result.stderr, `error: The server at 127.0.0.1:${port} did not answer within 0.1 seconds\n`);
    assertEquals(result.opened, []);
  } finally {
    listener.close();
    await accepting.catch(() => {});
    for (const conn of held) conn.close();
  }
});

// ── Logins where no browser can reach the loopback ──────────────────────────────────────────────

/** A clock the mock and the tool share; the tool's pauses move it instead of sleeping. */
function fakeTime() {
  const clock = { now: Date.now(), pauses: [] as number[] };
  const sleep = (ms: number) => {
    clock.pauses.push(ms);
    clock.now += ms;
    return Promise.resolve();
  };
  return { clock, now: () => clock.now, sleep };
}

async function withDeviceMock(fn: (mock: ServedMock, time: ReturnType<typeof fakeTime>) => Promise<void>) {
  const time = fakeTime();
  await withMock((mock) => fn(mock, time), { now: time.now });
}

function devicePolls(mock: ServedMock) {
  return tokenRequests(mock, "urn:ietf:params:oauth:grant-type:device_code");
}

Deno.test("device flow: success after authorization_pending answers, polling every interval", async () => {
  await withDeviceMock(async (mock, time) => {
    mock.device.pending = 2;
    const result = await run([...flags(mock), "--flow", "device"], { now: time.now, sleep: time.sleep });
    assertEquals(result.code, EXIT.ok, result.stderr);
    assertEquals(time.clock.pauses, [5000, 5000, 5000]);
    assertEquals(devicePolls(mock).length, 3);
    const [code] = [...mock.deviceCodes.values()].map((d) => d.userCode);
    assertEquals(code, undefined, "the device code was used up");
    assertStringIncludes(
      result.stderr,
      `To sign in, open this address on any device (a phone will do):\n\n  ${mock.issuer}/device\n`,
    );
    assertMatch(result.stderr, /and enter the code:\n\n {2}[B-Z]{4}-[B-Z]{4}\n/);
    assertStringIncludes(
      result.stderr,
      `Or open this address, which carries the code: ${mock.issuer}/device?user_code=`,
    );
    assertStringIncludes(result.stderr, "Check that the address is your provider's (127.0.0.1:");
    assertStringIncludes(result.stderr, "Logged in as alice@example.com\n");
    // Without the code: an opener's arguments are there for any local user to read.
    assertEquals(result.opened, [`${mock.issuer}/device`], "the browser is opened on the verification address");
    assertEquals(mock.calls("device_authorization")[0].form.scope, "openid profile offline_access");
  });
});

Deno.test("device flow: slow_down adds 5 s to this and every later poll", async () => {
  await withDeviceMock(async (mock, time) => {
    mock.device.slowDown = 2;
    mock.device.pending = 1;
    const result = await run([...flags(mock), "--flow", "device"], { now: time.now, sleep: time.sleep });
    assertEquals(result.code, EXIT.ok, result.stderr);
    assertEquals(time.clock.pauses, [5000, 10000, 15000, 15000]);
  });
});

Deno.test("device flow: no interval from the server means 5 s", async () => {
  await withDeviceMock(async (mock, time) => {
    mock.device.interval = undefined;
    mock.device.pending = 1;
    const result = await run([...flags(mock), "--flow", "device"], { now: time.now, sleep: time.sleep });
    assertEquals(result.code, EXIT.ok, result.stderr);
    assertEquals(time.clock.pauses, [5000, 5000]);
  });
});

Deno.test("device flow: access_denied exits 3, expired_token and the deadline exit 5", async (t) => {
  await t.step("access_denied", async () => {
    await withDeviceMock(async (mock, time) => {
      mock.device.outcome = "deny";
      const result = await run([...flags(mock), "--flow", "device"], { now: time.now, sleep: time.sleep });
      assertEquals(result.code, EXIT.denied);
      assertStringIncludes(result.stderr, 'error: Sign-in was declined: the server answered "access_denied"');
    });
  });
  await t.step("expired_token", async () => {
    await withDeviceMock(async (mock, time) => {
      mock.device.outcome = "expire";
      const result = await run([...flags(mock), "--flow", "device"], { now: time.now, sleep: time.sleep });
      assertEquals(result.code, EXIT.timedOut);
      assertStringIncludes(result.stderr, "error: The code expired before the sign-in was approved\n");
      assertEquals(devicePolls(mock).length, 1, "not started again");
    });
  });
  await t.step("pending until expires_in", async () => {
    await withDeviceMock(async (mock, time) => {
      mock.device.pending = 1000;
      mock.device.expiresIn = 30;
      const result = await run([...flags(mock), "--flow", "device"], { now: time.now, sleep: time.sleep });
      assertEquals(result.code, EXIT.timedOut);
      assertStringIncludes(result.stderr, "error: The code expired before the sign-in was approved\n");
      assertEquals(devicePolls(mock).length, 5, "polls at 5, 10, 15, 20 and 25 s; none at 30 s");
    });
  });
});

Deno.test("device flow: Ctrl-C during the pause between polls stops polling at once", async () => {
  await withDeviceMock(async (mock, time) => {
    const controller = new AbortController();
    const pauses: number[] = [];
    const never = Promise.withResolvers<void>(); // a pause that would never end
    const result = await run([...flags(mock), "--flow", "device"], {
      now: time.now,
      controller,
      animate: true, // so the countdown line announces each pause on stderr
      onStderr: (text) => {
        // Pressed once the pause it announces has begun (the line is written just before it).
        if (text.includes("Waiting for you to approve")) setTimeout(() => controller.abort(), 0);
      },
      sleep: (ms) => {
        pauses.push(ms);
        return never.promise;
      },
    });
    assertEquals(result.code, EXIT.interrupted);
    assertStringIncludes(result.stderr, "error: Login cancelled\n");
    assertEquals(pauses, [1000], "Ctrl-C came during the first pause");
    assertEquals(devicePolls(mock).length, 0);
    assert(result.ms < 2_000, `Ctrl-C took ${Math.round(result.ms)} ms to stop the polling`);
  });
});

Deno.test("device flow: a network failure while polling doubles the interval (RFC 8628 §3.5)", async () => {
  await withDeviceMock(async (mock, time) => {
    mock.device.pending = 1;
    let failures = 1;
    const flaky: typeof fetch = (input, init) => {
      const body = typeof init?.body === "string" ? init.body : String(init?.body ?? "");
      if (body.includes("device_code") && body.includes("grant_type") && failures-- > 0) {
        return Promise.reject(new TypeError("connection reset"));
      }
      return fetch(input, init);
    };
    const result = await run([...flags(mock), "--flow", "device"], { now: time.now, sleep: time.sleep, fetch: flaky });
    assertEquals(result.code, EXIT.ok, result.stderr);
    assertEquals(time.clock.pauses, [5000, 10000, 10000]);
  });
});

Deno.test("device flow: refused where the server does not offer it", async () => {
  await withMock(async (mock) => {
    mock.metadata.device_authorization_endpoint = undefined;
    const result = await run([...flags(mock), "--flow", "device"]);
    assertEquals(result.code, EXIT.usage);
    assertStringIncludes(result.stderr, "error: The server does not offer the device flow");
    assertStringIncludes(result.stderr, "hint: use --flow browser");
  });
});

/** Follows the authorization address like a browser on another machine, and returns where it ended. */
async function addressBrowserEndsOn(authorizationUrl: string): Promise<string> {
  const response = await fetch(authorizationUrl, { redirect: "manual" });
  await response.body?.cancel();
  return response.headers.get("location")!;
}

/** Lines a person pastes: each one made from the authorization address the tool printed. */
function paste(...make: ((callback: URL) => string)[]) {
  let printed: (address: string) => void;
  const address = new Promise<string>((resolve) => printed = resolve);
  return {
    onStderr: (text: string) => {
      const found = text.match(/\n {2}(http:\/\/\S+\/authorize\?\S+)\n/)?.[1];
      if (found) printed(found);
    },
    lines: (async function* () {
      const callback = new URL(await addressBrowserEndsOn(await address));
      for (const line of make) yield line(new URL(callback));
    })(),
  };
}

Deno.test("paste-back: a pasted address with the right state logs in; a wrong state is refused and the wait goes on", async () => {
  await withMock(async (mock) => {
    mock.metadata.device_authorization_endpoint = undefined;
    const pasted = paste(
      () => "not an address",
      (callback) => {
        callback.searchParams.set("state", "forged");
        return callback.href;
      },
      (callback) => `  ${callback.href}  `,
    );
    const result = await run(flags(mock), {
      env: { DISPLAY: "", SSH_CONNECTION: "10.0.0.1 22 10.0.0.2 22" },
      ...pasted,
    });
    assertEquals(result.code, EXIT.ok, result.stderr);
    assertStringIncludes(
      result.stderr,
      "No browser can be opened here (this is an SSH session without a forwarded display) and the server has no device flow",
    );
    assertStringIncludes(result.stderr, "paste its address here and press Enter");
    assertStringIncludes(result.stderr, "warning: That is not an address;");
    assertStringIncludes(
      result.stderr,
      "warning: That address does not belong to the sign-in in progress, so it was ignored",
    );
    assertStringIncludes(result.stderr, "Logged in as alice@example.com\n");
    assertEquals(result.opened, []);
    assertEquals(mock.calls("token").length, 1);
  });
});

Deno.test("paste-back: a pasted error=access_denied ends the login as the callback would", async () => {
  await withMock(async (mock) => {
    mock.decision = "deny";
    const pasted = paste((callback) => callback.href);
    const result = await run([...flags(mock), "--flow", "browser", "--no-browser"], pasted);
    assertEquals(result.code, EXIT.denied);
    assertStringIncludes(result.stderr, 'error: Sign-in was declined: the server answered "access_denied"');
    assertEquals(mock.calls("token").length, 0);
  });
});

Deno.test("automatic choice: each environment leads to the documented flow", async (t) => {
  const ssh = { SSH_CONNECTION: "10.0.0.1 51000 10.0.0.2 22" };
  const cases: [string, Record<string, string>, string, boolean, string | undefined][] = [
    ["a Linux desktop", { DISPLAY: ":0" }, "linux", true, undefined],
    ["Wayland", { DISPLAY: "", WAYLAND_DISPLAY: "wayland-0" }, "linux", true, undefined],
    [
      "SSH without a forwarded display",
      { ...ssh, DISPLAY: "" },
      "linux",
      false,
      "this is an SSH session without a forwarded display",
    ],
    ["SSH with X forwarding", { ...ssh, DISPLAY: "localhost:10.0" }, "linux", true, undefined],
    ["no display at all", { DISPLAY: "" }, "linux", false, "there is no display"],
    ["an explicit $BROWSER over SSH", { ...ssh, DISPLAY: "", BROWSER: "w3m" }, "linux", true, undefined],
    ["macOS over SSH", ssh, "darwin", false, "this is an SSH session"],
    ["macOS", {}, "darwin", true, undefined],
    ["Windows", {}, "windows", true, undefined],
  ];
  for (const [name, env, os, browserFlow, why] of cases) {
    await t.step(name, async () => {
      await withDeviceMock(async (mock, time) => {
        const result = await run(flags(mock), { env, os, now: time.now, sleep: time.sleep });
        assertEquals(result.code, EXIT.ok, result.stderr);
        assertEquals(devicePolls(mock).length > 0, !browserFlow);
        assertEquals(result.opened.length, browserFlow ? 1 : 0, "the browser is opened exactly where one can be");
        if (why) assertStringIncludes(result.stderr, `Using the device flow: no browser can be opened here (${why}`);
        else assertNotMatch(result.stderr, /Using the device flow/);
      });
    });
  }
  await t.step("no xdg-open installed", async () => {
    await withDeviceMock(async (mock, time) => {
      const result = await run(flags(mock), { which: (c) => c !== "xdg-open", now: time.now, sleep: time.sleep });
      assertEquals(result.code, EXIT.ok, result.stderr);
      assertStringIncludes(
        result.stderr,
        "Using the device flow: no browser can be opened here (xdg-open is not installed)",
      );
    });
  });
  await t.step("--no-browser", async () => {
    await withDeviceMock(async (mock, time) => {
      const result = await run([...flags(mock), "--no-browser"], { now: time.now, sleep: time.sleep });
      assertEquals(result.code, EXIT.ok, result.stderr);
      assertStringIncludes(
        result.stderr,
        "Using the device flow: no browser can be opened here (--no-browser was given)",
      );
      assertEquals(result.opened, []);
    });
  });
  await t.step("--flow browser overrides it", async () => {
    await withMock(async (mock) => {
      const pasted = paste((callback) => callback.href);
      const result = await run([...flags(mock), "--flow", "browser"], { env: { DISPLAY: "" }, ...pasted });
      assertEquals(result.code, EXIT.ok, result.stderr);
      assertEquals(mock.calls("device_authorization").length, 0);
    });
  });
});

// ── doctor ──────────────────────────────────────────────────────────────────────────────────────

Deno.test("doctor: a healthy setup exits 0 and shows where each setting came from, never a secret", async () => {
  await withMock(async (mock) => {
    const result = await run(["doctor", "--client-id", CONFIDENTIAL_CLIENT.id], {
      env: { OAUTH_ISSUER: mock.issuer, ...ENV_CONFIDENTIAL, HTTPS_PROXY: "http://user:pw@proxy.example:3128" },
    });
    assertEquals(result.code, EXIT.ok, result.stdout);
    assertStringIncludes(result.stdout, `ok    config     issuer: ${mock.issuer} (from environment)\n`);
    assertStringIncludes(result.stdout, "ok    config     client id: cli-confidential (from flag)\n");
    assertStringIncludes(result.stdout, "ok    config     client secret: set (from environment)\n");
    assertStringIncludes(result.stdout, "names itself as the configured issuer");
    assertStringIncludes(result.stdout, "ok    discovery  the device flow (RFC 8628) is offered\n");
    assertStringIncludes(result.stdout, "this client uses client_secret_basic");
    assertStringIncludes(result.stdout, "ok    redirect   an ephemeral port on 127.0.0.1");
    assertStringIncludes(result.stdout, "ok    browser    would open with xdg-open");
    assertStringIncludes(result.stdout, "ok    network    HTTPS_PROXY is set to http://proxy.example:3128\n");
    assertNotMatch(result.stdout + result.stderr, /s3cret|pw@/);
    assertNotMatch(result.stdout, /^fail/m);
    const json = JSON.parse((await run(["doctor", "--json", ...flags(mock)])).stdout);
    assertEquals(json.ok, true);
    assert(json.checks.every((c: { status: string }) => ["ok", "warn"].includes(c.status)));
  });
});

Deno.test("doctor: each problem has its fail or warn line", async (t) => {
  await t.step("an unreachable issuer", async () => {
    const port = freePort();
    const result = await run(["doctor", "--issuer", `http://127.0.0.1:${port}`, "--client-id", "x"]);
    assertEquals(result.code, EXIT.failure);
    assertStringIncludes(result.stdout, `fail  discovery  Cannot reach 127.0.0.1:${port}:`);
  });
  await t.step("an issuer mismatch", async () => {
    await withMock(async (mock) => {
      mock.metadata.issuer = "https://elsewhere.example";
      const result = await run(["doctor", ...flags(mock)]);
      assertEquals(result.code, EXIT.failure);
      assertStringIncludes(result.stdout, `fail  discovery  Issuer mismatch: asked for "${mock.issuer}"`);
    });
  });
  await t.step("a busy port", async () => {
    await withMock(async (mock) => {
      const busy = Deno.listen({ hostname: "127.0.0.1", port: 0 });
      const port = (busy.addr as Deno.NetAddr).port;
      try {
        const result = await run(["doctor", ...flags(mock), "--port", String(port)]);
        assertEquals(result.code, EXIT.failure);
        assertStringIncludes(
          result.stdout,
          `fail  redirect   port ${port} is in use on 127.0.0.1 by another program\n`,
        );
      } finally {
        busy.close();
      }
    });
  });
  await t.step("an over-permissive cache directory", async () => {
    await withMock(async (mock) => {
      const dir = await tempDir();
      await Deno.chmod(dir, 0o755);
      const result = await run(["doctor", ...flags(mock)], { storage: fileStorage(dir) });
      assertEquals(result.code, EXIT.ok, "a warning, not a failure");
      assertStringIncludes(
        result.stdout,
        `warn  cache      ${dir} can be read by other users (mode 755): chmod 700 ${dir}\n`,
      );
    });
  });
  await t.step("missing settings", async () => {
    const result = await run(["doctor"]);
    assertEquals(result.code, EXIT.failure);
    assertStringIncludes(result.stdout, "fail  config     No issuer is configured");
  });
  await t.step("no browser and no device flow", async () => {
    await withMock(async (mock) => {
      mock.metadata.device_authorization_endpoint = undefined;
      const result = await run(["doctor", ...flags(mock)], { env: { DISPLAY: "" } });
      assertStringIncludes(result.stdout, "warn  browser    no browser can be opened: there is no display");
      assertStringIncludes(result.stdout, "warn  discovery  no device flow");
      assertStringIncludes(
        result.stdout,
        "ok    browser    login would use the browser flow (No browser can be opened here",
      );
    });
  });
});

// ── The hot path ────────────────────────────────────────────────────────────────────────────────

Deno.test("quickParse() reads every command's long flags exactly as parseArgs does, and declines the rest", async () => {
  const agreed = [
    [],
    ["login"],
    ["--issuer", "https://a.example", "--client-id", "x", "--no-browser"],
    ["login", "--redirect-uri=http://127.0.0.1:8400/cb", "--timeout", "30", "--prompt", "consent", "--flow", "device"],
    ["token"],
    ["token", "--issuer", "https://a.example", "--client-id", "x"],
    ["token", "--issuer=https://a.example", "--client-id=x", "--scope", "openid email", "--json"],
    ["token", "--format", "exec-credential", "--min-ttl", "300", "--param", "audience=a", "--param", "resource=b"],
    ["token", "--interactive", "--quiet", "--flow", "device", "--scope", ""],
    ["token", "--env-file", "other.env", "--param=x=y=z"],
    ["whoami", "--json"],
    ["status"],
    ["logout", "--all"],
    ["doctor", "--port", "8400", "--json"],
    ["--help"],
    ["token", "--help"],
    ["logout", "--version"],
  ];
  // parseArgs returns a null-prototype object; compare what the flags say.
  const plain = (cli: unknown) => JSON.parse(JSON.stringify(cli));
  for (const args of agreed) {
    const quick = quickParse(args);
    assert(quick !== undefined, `quickParse declined: ${args.join(" ")}`);
    assertEquals(plain(quick), plain(await parseCli(args)), args.join(" "));
  }
  const declined = [
    ["token", "-v"],
    ["-v"],
    ["-h"],
    ["token", "--all"],
    ["whoami", "--timeout", "3"],
    ["token", "--bogus"],
    ["token", "--issuer"],
    ["token", "--issuer", "--json"],
    ["token", "extra"],
    ["token", "--json=yes"],
    ["token", "--"],
    ["bogus"],
    ["constructor"],
    ["__proto__"],
  ];
  for (const args of declined) assertEquals(quickParse(args), undefined, args.join(" "));
  // What quickParse declines, parseArgs decides: every case above is either help or a usage error.
  for (const args of declined.filter((args) => !args.includes("-h") && !args.includes("-v"))) {
    const result = await run(args);
    assertEquals(result.code, EXIT.usage, `${args.join(" ")}: ${result.stderr}`);
  }
});

Deno.test("deno task demo: a real login against the mock issuer, signed in by the scripted browser without a display", async () => {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--quiet", ...PERMISSIONS, new URL("./tests/mock_issuer.ts", import.meta.url).pathname],
    env: { NO_COLOR: "1", DISPLAY: "", WAYLAND_DISPLAY: "", BROWSER: "" },
    stdin: "null",
  }).output();
  const stderr = new TextDecoder().decode(output.stderr);
  assertEquals(output.code, EXIT.ok, stderr);
  assertStringIncludes(stderr, "demo: no display here, so a scripted browser signs in");
  assertStringIncludes(stderr, "Logged in as demo-user\n");
  // Its tokens are removed at its end: kept in its file, never in the person's keychain, and no warning about it.
  assertEquals(stderr.match(/^warning: .*/m), null);
  assertEquals(new TextDecoder().decode(output.stdout), "");
});

Deno.test("openWithSystemBrowser() refuses anything but an http(s) address, before spawning", async () => {
  for (const url of ["file:///etc/passwd", "javascript:alert(1)", "smb://evil/share", "not a url"]) {
    let refused = "";
    await openWithSystemBrowser(url).catch((error) => refused = error.message);
    assertEquals(refused, "only http(s) addresses are opened", url);
  }
});

Deno.test("--port with a malformed OAUTH_REDIRECT_URI is a configuration error, not a crash", async () => {
  const result = await run(["--issuer", "https://a.example", "--client-id", "x", "--port", "8080"], {
    env: { OAUTH_REDIRECT_URI: "127.0.0.1/cb" },
  });
  assertEquals(result.code, EXIT.usage);
  assertStringIncludes(result.stderr, 'error: The redirect URI "127.0.0.1/cb" is not an http URL on a loopback host\n');
});

Deno.test("a registered redirect URI is sent exactly as configured, not normalised", async () => {
  await withMock(async (mock) => {
    const port = freePort();
    const redirectUri = `http://LOCALHOST:${port}/callback`;
    mock.clients = [{ ...PUBLIC_CLIENT, redirectUris: [redirectUri] }];
    const result = await run([...flags(mock), "--redirect-uri", redirectUri]);
    assertEquals(result.code, EXIT.ok, result.stderr);
    assertEquals(mock.calls("authorize")[0].query.redirect_uri, redirectUri);
    assertEquals(mock.calls("token")[0].form.redirect_uri, redirectUri);
  });
});

Deno.test("a callback accepted before --timeout completes even if the exchange outlasts it", async () => {
  await withMock(async (mock) => {
    let exchanged!: () => void;
    const exchange = new Promise<void>((resolve) => exchanged = resolve);
    mock.intercept = async (record) => {
      // The token endpoint answers only after the login's timeout would have fired.
      if (record.path.endsWith("/token")) await new Promise((r) => setTimeout(r, 300));
      if (record.path.endsWith("/token")) exchanged();
      return undefined;
    };
    const result = await run([...flags(mock), "--timeout", "0.1"]);
    assertEquals(result.code, EXIT.ok, result.stderr);
    await exchange; // the login waited for the exchange, so this has happened (no timer is left)
    assertStringIncludes(result.visit!.body, "Signed in as alice@example.com");
    assertStringIncludes(result.stderr, "Logged in as alice@example.com");
  });
});

Deno.test("token waiting for another process's refresh stops at once on Ctrl-C, and refreshes nothing", async () => {
  await withCache(async ({ mock, clock, cli, storage, entryPath }) => {
    assertEquals((await cli(["login"])).code, EXIT.ok);
    clock.now += 3600_000;
    const name = (await entryPath()).split("/").pop()!.replace(/\.json$/, "");
    const held = await storage.lock(name); // another process is refreshing
    const controller = new AbortController();
    let pending: Promise<{ release(): void }> | undefined;
    const waiting: Storage = {
      ...storage,
      lock: (entry) => {
        pending = storage.lock(entry);
        // The wait for the lock has begun (the lock is held above, so it cannot be granted): Ctrl-C.
        setTimeout(() => controller.abort(), 20);
        return pending;
      },
    };
    try {
      const result = await cli(["token"], { storage: waiting, controller });
      assertEquals(result.code, EXIT.interrupted);
      assertEquals(result.stdout, "");
      assertEquals(result.stderr, "error: Interrupted\n");
      assert(result.ms < 2_000, `Ctrl-C took ${Math.round(result.ms)} ms to end the wait`);
      assertEquals(tokenRequests(mock, "refresh_token").length, 0);
    } finally {
      held.release();
      // The abandoned request for the lock is granted once it is free, and released at once by the tool.
      await pending;
    }
  });
});

Deno.test("logout says when the server has no revocation endpoint", async () => {
  await withCache(async ({ mock, cli, storage }) => {
    mock.metadata.revocation_endpoint = undefined;
    assertEquals((await cli(["login"])).code, EXIT.ok);
    const result = await cli(["logout"]);
    assertEquals(result.code, EXIT.ok);
    assertStringIncludes(result.stderr, "note: The server has no revocation endpoint, so the tokens stay valid there");
    assertEquals(await storage.list(), []);
    assertEquals(mock.calls("revoke").length, 0);
  });
});

Deno.test("a write removes temporary files that a killed writer left behind, and no others", async () => {
  const dir = await tempDir();
  const storage = fileStorage(dir);
  const entry = "idp.example-0123456789abcdef.json";
  await storage.write(entry, "{}");
  // The writer's own pattern (`<entry>.<32 hex>.tmp`), old and recent; and an old .tmp of someone else's.
  const [old, recent] = [`${entry}.${"a".repeat(32)}.tmp`, `${entry}.${"b".repeat(32)}.tmp`];
  for (const name of [old, recent, "notes.tmp"]) await Deno.writeTextFile(`${dir}/${name}`, "half");
  const hourAgo = new Date(Date.now() - 3600_000);
  for (const name of [old, "notes.tmp"]) await Deno.utime(`${dir}/${name}`, hourAgo, hourAgo);
  await storage.write(entry, '{"new":true}');
  const names = [];
  for await (const found of Deno.readDir(dir)) names.push(found.name);
  assertEquals(names.sort(), [entry, recent, "notes.tmp"].sort());
});

Deno.test("discovery honours a short Retry-After from a busy server once, then gives up clearly", async (t) => {
  await t.step("503 with Retry-After: 2, then the metadata", async () => {
    await withMock(async (mock) => {
      let busy = 1;
      mock.intercept = (record) =>
        record.path.includes(".well-known") && busy-- > 0
          ? new Response("busy", { status: 503, headers: { "retry-after": "2" } })
          : undefined;
      const time = fakeTime();
      const result = await run(flags(mock), { sleep: time.sleep });
      assertEquals(result.code, EXIT.ok, result.stderr);
      assertEquals(time.clock.pauses, [2000]);
    });
  });
  await t.step("503 for a minute is not waited for", async () => {
    await withMock(async (mock) => {
      mock.intercept = (record) =>
        record.path.includes(".well-known")
          ? new Response("busy", { status: 503, headers: { "retry-after": "60" } })
          : undefined;
      const result = await run(flags(mock));
      assertEquals(result.code, EXIT.failure);
      assertStringIncludes(result.stderr, "error: Cannot fetch the server metadata: the server answered HTTP 503");
      assertStringIncludes(result.stderr, "hint: try again later");
    });
  });
});

Deno.test("the --verbose trace redacts secrets nested inside objects too", async () => {
  await withMock(async (mock) => {
    mock.metadata.nested = { refresh_token: "nested-secret-value-1234567890" };
    const result = await run([...flags(mock), "--verbose"]);
    assertEquals(result.code, EXIT.ok, result.stderr);
    assertNotMatch(result.stderr, /nested-secret-value/);
    assertStringIncludes(result.stderr, 'nested={"refresh_token":"nest…[redacted]"}');
  });
});
