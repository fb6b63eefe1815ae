import { assert, assertEquals, assertMatch, assertNotMatch, assertStringIncludes } from "./tests/assert.ts";
import {
  type Deps,
  EXIT,
  fileStorage,
  main,
  openerCommand,
  page,
  parseIssuer,
  sanitize,
  type Storage,
  VERSION,
} from "./login.ts";
import {
  type BrowserVisit,
  CONFIDENTIAL_CLIENT,
  PUBLIC_CLIENT,
  s256,
  scriptedBrowser,
  type ServedMock,
  serveMockIssuer,
} from "./mock_issuer.ts";

// ── Harness ─────

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

// ── Harness (continued) ─────────────────────────────────────────────────────────────────────────────────

interface Run {
  code: number;
  stdout: string;
  stderr: string;
  /** What the injected opener was asked to open. */
  opened: string[];
  /** What the scripted browser saw, when it ran. */
  visit?: BrowserVisit;
}

interface RunOptions {
  env?: Record<string, string>;
  files?: Record<string, Record<string, string>>;
  /** Plays the browser when the tool opens a URL; the default follows it and approves. */
  browser?: (url: string) => Promise<BrowserVisit | undefined>;
  openFails?: string;
  controller?: AbortController;
  /** The token cache; a fresh temporary one by default. */
  storage?: Storage;
  interactive?: boolean;
  now?: () => number;
}

async function run(args: string[], options: RunOptions = {}): Promise<Run> {
  let stdout = "";
  let stderr = "";
  const opened: string[] = [];
  let visit: Promise<BrowserVisit | undefined> | undefined;
  const browser = options.browser ?? ((url: string) => scriptedBrowser(url));
  const deps: Deps = {
    fetch: globalThis.fetch,
    openUrl: (url) => {
      opened.push(url);
      visit = browser(url);
      if (options.openFails) return Promise.reject(new Error(options.openFails));
      return Promise.resolve();
    },
    now: options.now ?? (() => Date.now()),
    env: (name) => options.env?.[name],
    readEnvFile: (path) => Promise.resolve(options.files?.[path]),
    stdout: (text) => stdout += text,
    stderr: (text) => stderr += text,
    interactive: options.interactive ?? false,
    storage: options.storage ?? fileStorage(await tempDir()),
    signal: (options.controller ?? new AbortController()).signal,
  };
  const code = await main(args, deps);
  return { code, stdout, stderr, opened, visit: await visit };
}

function flags(mock: ServedMock, client = PUBLIC_CLIENT, ...extra: string[]): string[] {
  return ["--issuer", mock.issuer, "--client-id", client.id, ...extra];
}

const ENV_CONFIDENTIAL = { OAUTH_CLIENT_SECRET: CONFIDENTIAL_CLIENT.secret! };

async function withMock(fn: (mock: ServedMock) => Promise<void>, options = {}): Promise<void> {
  const mock = serveMockIssuer(options);
  try {
    await fn(mock);
  } finally {
    await mock.close();
  }
}

/** A port that is free now (the OS picks it). */
function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

async function assertPortClosed(url: string): Promise<void> {
  const { hostname, port } = new URL(url);
  try {
    const conn = await Deno.connect({ hostname: hostname.replace(/^\[|\]$/g, ""), port: Number(port) });
    conn.close();
    throw new Error(`port ${port} is still open`);
  } catch (error) {
    assert(error instanceof Deno.errors.ConnectionRefused, String(error));
  }
}

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
    assertMatch(result.opened[0], /^http:\/\/127\.0\.0\.1:\d+\/$/);
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
    await assertPortClosed(result.opened[0]);
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
      assertStringIncludes(result.stderr, "hint: check the client id and secret");
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
    assertEquals(result.opened, [`http://localhost:${port}/`]);
    assertEquals(reachable, ["127.0.0.1", "::1"]);
    assertEquals(mock.calls("authorize")[0].query.redirect_uri, redirectUri);
    assertEquals(mock.calls("token")[0].form.redirect_uri, redirectUri);
    await assertPortClosed(`http://127.0.0.1:${port}/`);
    await assertPortClosed(`http://[::1]:${port}/`);
  });
});

Deno.test("login() with --port listens on 127.0.0.1 at that port", async () => {
  await withMock(async (mock) => {
    const port = freePort();
    const result = await run([...flags(mock), "--port", String(port)]);
    assertEquals(result.code, EXIT.ok, result.stderr);
    assertEquals(mock.calls("authorize")[0].query.redirect_uri, `http://127.0.0.1:${port}/callback`);
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
        // A page on another host (DNS rebinding) sends its own Host header.
        const conn = await Deno.connect({ hostname: "127.0.0.1", port: Number(base.port) });
        await conn.write(
          new TextEncoder().encode("GET /callback HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n"),
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
        const authorize = await fetch(start.headers.get("location")!, { redirect: "manual" });
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
    await assertPortClosed(result.opened[0]);
  });
});

Deno.test("login() stops with exit 130 on Ctrl-C and frees the port", async () => {
  await withMock(async (mock) => {
    const controller = new AbortController();
    const result = await run(flags(mock), {
      controller,
      browser: () => {
        controller.abort();
        return Promise.resolve(undefined);
      },
    });
    assertEquals(result.code, EXIT.interrupted);
    assertStringIncludes(result.stderr, "error: Login cancelled\n");
    await assertPortClosed(result.opened[0]);
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

Deno.test("login() keeps waiting when the browser cannot be opened", async () => {
  await withMock(async (mock) => {
    const result = await run(flags(mock), { openFails: '"xdg-open" was not found' });
    assertEquals(result.code, EXIT.ok, result.stderr);
    assertStringIncludes(
      result.stderr,
      'warning: Cannot open a browser ("xdg-open" was not found); open the address above yourself\n',
    );
    assertStringIncludes(result.stderr, "Logged in as alice@example.com");
  });
});

Deno.test("login() --no-browser prints the short address and opens nothing", async () => {
  await withMock(async (mock) => {
    let printed: string | undefined;
    const stderrWatcher = async () => {
      // The person reads the address from the terminal and opens it by hand.
      while (!printed) await new Promise((r) => setTimeout(r, 5));
      return scriptedBrowser(printed);
    };
    let stderr = "";
    const deps: Deps = {
      fetch,
      openUrl: () => Promise.reject(new Error("must not be called")),
      now: Date.now,
      env: () => undefined,
      readEnvFile: () => Promise.resolve(undefined),
      interactive: false,
      storage: fileStorage(await tempDir()),
      stdout: () => {},
      stderr: (text) => {
        stderr += text;
        printed ??= text.match(/(http:\/\/127\.0\.0\.1:\d+\/)\n/)?.[1];
      },
      signal: new AbortController().signal,
    };
    const [code] = await Promise.all([main([...flags(mock), "--no-browser"], deps), stderrWatcher()]);
    assertEquals(code, EXIT.ok, stderr);
    assertMatch(stderr, /To sign in at 127\.0\.0\.1:\d+, open this address in a browser on this machine: http/);
    assertNotMatch(stderr, /Opening your browser/);
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
        `error: Issuer mismatch: asked for "${mock.issuer}/", the server says "${mock.issuer}/other"\n`,
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

Deno.test("PKCE S256 matches the RFC 7636 appendix B vector", async () => {
  const { calculatePKCECodeChallenge } = await import("oauth4webapi");
  const verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
  assertEquals(await calculatePKCECodeChallenge(verifier), "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
  assertEquals(await s256(verifier), "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
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
