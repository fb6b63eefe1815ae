/**
 * Issue 20: point it at an API and it works. `fetch URL` with nothing configured finds the
 * authorization server in the API's metadata (RFC 9728), gets itself a client (a `--client-id`, one it
 * registered before, or one it registers now, RFC 7591), signs in for the API's resource (RFC 8707),
 * and steps up once when the API asks for more (RFC 6750 `insufficient_scope`, RFC 9470).
 *
 * In-process runs of `main()` against the mock issuer (with registration and client ID metadata
 * documents as options) and a stand-in API of our own (`tests/_resource_server.ts`), both on
 * 127.0.0.1; the scripted browser signs in. Each case asserts stdout, stderr, the exit code, what the
 * servers received and what is on disk.
 *
 * @module
 */
import { EXIT, fileStorage } from "../login.ts";
import { CONFIDENTIAL_CLIENT, type MockOptions, type ServedMock, serveMockIssuer } from "./mock_issuer.ts";
import { type ResourceServer, type ResourceServerOptions, serveResourceServer } from "./_resource_server.ts";
import {
  assertNoLeaks,
  cleanUp,
  filesUnder,
  run,
  type RunOptions,
  scriptedBrowser,
  START_PATH,
  WAITING_LINE,
} from "./_harness.ts";
import { assert, assertEquals, assertMatch, assertStringIncludes } from "./assert.ts";

// ── Fixtures ────────────────────────────────────────────────────────────────────────────────────

interface World {
  mock: ServedMock;
  api: ResourceServer;
}

/**
 * A mock issuer with open registration (unless `issuer` says otherwise) and a stand-in API that takes
 * its tokens (checked in the mock's own records) and names it in its metadata.
 */
async function withWorld(
  fn: (world: World) => Promise<void>,
  options: {
    issuer?: MockOptions;
    api?: Partial<ResourceServerOptions>;
    /** What the server grants of the scope asked (default: all of it). */
    grants?: (scope: string) => string;
  } = {},
): Promise<void> {
  const mock = serveMockIssuer({ registration: true, ...options.issuer });
  const grants = options.grants ?? ((scope: string) => scope);
  const api = serveResourceServer({
    authorizationServers: [mock.issuer],
    verify: (token) => {
      const info = mock.accessTokens.get(token);
      return info && info.exp * 1000 > Date.now()
        ? { scope: grants(info.scope), audience: info.resource, acr: info.acr, authTime: info.authTime, sub: info.sub }
        : undefined;
    },
    ...options.api,
  });
  try {
    await fn({ mock, api });
  } finally {
    await api.close();
    await mock.close();
  }
}

/** A person at a terminal with a browser: the scripted browser signs in. */
const PERSON: RunOptions = { browser: scriptedBrowser, interactive: true };

/** The requests the API received: method, path and whether a token came. */
function apiLog(api: ResourceServer): string[] {
  return api.requests.map((r) => `${r.method} ${r.path}${r.authorization ? " (token)" : ""}`);
}

/** The requests the issuer received, by path (the preflight left out). */
function issuerLog(mock: ServedMock): string[] {
  const origin = new URL(mock.issuer).origin;
  return mock.requests.filter((r) => !(r.headers["user-agent"] ?? "").startsWith("oauth-login/"))
    .map((r) => `${r.method} ${r.path}`.replace(origin, ""));
}

/** The JSON files in the run's cache folder. */
async function cached(home: string): Promise<string[]> {
  return (await filesUnder(`${home}/cache`)).filter((name) => name.endsWith(".json"));
}

const LOGIN_LINES = (mock: ServedMock, api: ResourceServer) =>
  `The API at ${new URL(api.url).host} takes tokens from ${mock.issuer}: signing in there\n` +
  `note: Registered this tool as a client at ${new URL(mock.issuer).host} (RFC 7591); it is kept for later sign-ins\n` +
  `Opening your browser to sign in at ${new URL(mock.issuer).host} ...\n`;

// ── The flow ────────────────────────────────────────────────────────────────────────────────────

Deno.test("fetch URL with nothing configured: discovers, registers, signs in for the API and prints its answer; the next fetch signs in no more", async () => {
  await withWorld(async ({ mock, api }) => {
    const first = await run(["fetch", `${api.url}/tools`], PERSON);
    assertEquals(first.code, EXIT.ok, first.stderr);
    assertEquals(JSON.parse(first.stdout).path, "/mcp/tools");
    assertMatch(
      first.stderr,
      new RegExp(
        `^${escape(LOGIN_LINES(mock, api))}If it does not open, visit: http://127\\.0\\.0\\.1:\\d+${START_PATH}\\n${
          escape(WAITING_LINE)
        }Logged in as alice@example\\.com\\n$`,
      ),
    );
    // The API: once without a token (its 401 names its metadata), then with one.
    assertEquals(apiLog(api), [
      "GET /mcp/tools",
      "GET /.well-known/oauth-protected-resource/mcp",
      "GET /mcp/tools (token)",
    ]);
    // The issuer: discovery, one registration, the sign-in and the code exchange, each for the API's resource.
    assertEquals(issuerLog(mock), [
      "GET /.well-known/oauth-authorization-server",
      "POST /register",
      "GET /authorize",
      "POST /token",
    ]);
    const registration = mock.calls("register")[0].json!;
    assertEquals(registration, {
      client_name: "oauth-login (a command-line tool)",
      application_type: "native",
      token_endpoint_auth_method: "none",
      redirect_uris: ["http://127.0.0.1/callback", "http://[::1]/callback", "http://localhost/callback"],
      grant_types: ["authorization_code", "refresh_token", "urn:ietf:params:oauth:grant-type:device_code"],
      response_types: ["code"],
    });
    const client = mock.clients.at(-1)!.id;
    const authorize = mock.calls("authorize")[0].query;
    assertEquals(authorize.client_id, client);
    assertEquals(authorize.resource, api.resource);
    assertEquals(
      authorize.scope,
      "openid profile offline_access",
      "the server's openid and offline_access; the API names no scope",
    );
    assertEquals(mock.calls("token")[0].form.resource, api.resource);
    // On disk: the entry under the API's resource, and the registration, both owner-only; only the entry is a login.
    const files = await cached(first.home);
    assertEquals(files.length, 2);
    for (const file of files) assertEquals((await Deno.stat(`${first.home}/cache/${file}`)).mode! & 0o777, 0o600);
    assertEquals((await fileStorage(`${first.home}/cache`).list()).length, 1, "list() names the entry only");
    assertNoLeaks(first, [...mock.accessTokens.keys()]);

    const second = await run(["fetch", `${api.url}/tools`], { home: first.home });
    assertEquals(second.code, EXIT.ok, second.stderr);
    assertEquals(second.stderr, "");
    assertEquals(JSON.parse(second.stdout).path, "/mcp/tools");
    assertEquals(apiLog(api).at(-1), "GET /mcp/tools (token)");
    assertEquals(apiLog(api).length, 4, "straight to the API with the cached token");
    assertEquals(mock.calls("authorize").length, 1, "no second sign-in");
    await cleanUp(first);
  });
});

/** A string as regular-expression source that matches it literally. */
function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

Deno.test("the metadata is found at both well-known forms when the challenge names none: the path inserted, then the root", async (t) => {
  for (
    const [discovery, expected] of [
      ["path", ["GET /mcp", "GET /.well-known/oauth-protected-resource/mcp", "GET /mcp (token)"]],
      [
        "root",
        [
          "GET /mcp",
          "GET /.well-known/oauth-protected-resource/mcp",
          "GET /.well-known/oauth-protected-resource",
          "GET /mcp (token)",
        ],
      ],
    ] as const
  ) {
    await t.step(discovery, async () => {
      await withWorld(async ({ api }) => {
        const result = await run(["fetch", api.url], PERSON);
        assertEquals(result.code, EXIT.ok, result.stderr);
        assertEquals(JSON.parse(result.stdout).path, "/mcp");
        assertEquals(apiLog(api), [...expected]);
        await cleanUp(result);
      }, { api: { discovery } });
    });
  }
});

Deno.test("an API that says nothing about where to sign in: its 401 and both well-known URLs tried, then one sentence (exit 2)", async () => {
  await withWorld(async ({ mock, api }) => {
    const result = await run(["fetch", api.url], PERSON);
    assertEquals(result.code, EXIT.usage);
    assertEquals(result.stdout, "");
    assertEquals(
      result.stderr,
      `error: The API at ${
        new URL(api.url).host
      } does not say where to sign in: its answer (HTTP 401) names no metadata, and there is none at ${api.origin}/.well-known/oauth-protected-resource/mcp or ${api.origin}/.well-known/oauth-protected-resource\n` +
        "hint: pass --issuer and --client-id of the server that hands out its tokens\n",
    );
    assertEquals(mock.requests, [], "no server was asked");
    assertEquals(await filesUnder(result.home), []);
    await cleanUp(result);
  }, { api: { discovery: "none" } });
});

Deno.test("metadata that names another origin, or a sibling path, is refused with the resource it claims (exit 1), before any server is asked", async (t) => {
  for (
    const [name, claim] of [
      ["another origin", () => "https://evil.example/mcp"],
      ["another port", (origin: string) => origin.replace(/:(\d+)$/, (_, port) => `:${Number(port) + 1}`) + "/mcp"],
      ["a sibling path", (origin: string) => `${origin}/mc`],
    ] as const
  ) {
    await t.step(name, async () => {
      await withWorld(async ({ mock, api }) => {
        const result = await run(["fetch", api.url], PERSON);
        assertEquals(result.code, EXIT.failure);
        assertEquals(result.stdout, "");
        assertEquals(
          result.stderr,
          `error: The metadata of the API at ${
            new URL(api.url).host
          } (${api.origin}/.well-known/oauth-protected-resource/mcp) claims the resource "${api.resource}", which is not ${api.url} or a path above it\n` +
            "hint: its metadata must name this URL or a path above it on the same host (RFC 9728 §3.3)\n",
        );
        assertEquals(mock.requests, [], "the server it names was never asked");
        assertEquals(await filesUnder(result.home), []);
        await cleanUp(result);
      }, { api: { resource: claim } });
    });
  }
});

Deno.test("metadata of the API's root is accepted for a path below it (RFC 9728 §3.3 as MCP clients read it), and the entry serves every path below", async () => {
  await withWorld(async ({ mock, api }) => {
    const result = await run(["fetch", `${api.url}/a/b`], PERSON);
    assertEquals(result.code, EXIT.ok, result.stderr);
    assertEquals(mock.calls("authorize")[0].query.resource, api.origin);
    const again = await run(["fetch", `${api.url}/c`], { home: result.home });
    assertEquals(again.code, EXIT.ok, again.stderr);
    assertEquals(mock.calls("authorize").length, 1, "the entry for the root serves /mcp/c");
    await cleanUp(result);
  }, { api: { resource: (origin) => origin } });
});

Deno.test("a server with neither registration nor client ID metadata documents: one sentence naming the server and the flag (exit 2)", async (t) => {
  await t.step("neither", async () => {
    await withWorld(async ({ mock, api }) => {
      const result = await run(["fetch", api.url], PERSON);
      assertEquals(result.code, EXIT.usage);
      assertEquals(result.stdout, "");
      assertEquals(
        result.stderr,
        `error: The server ${mock.issuer} offers no way to get a client: no registration endpoint (RFC 7591) and no client ID metadata documents\n` +
          `hint: register a client there (redirect URI http://127.0.0.1/callback, any port) and pass --client-id ID, or keep it in a profile with --issuer ${mock.issuer} (--save-profile NAME)\n`,
      );
      assertEquals(issuerLog(mock), ["GET /.well-known/oauth-authorization-server"]);
      await cleanUp(result);
    }, { issuer: { registration: false } });
  });
  await t.step("documents only, and no --client-id", async () => {
    await withWorld(async ({ mock, api }) => {
      const result = await run(["fetch", api.url], PERSON);
      assertEquals(result.code, EXIT.usage);
      assertEquals(
        result.stderr,
        `error: The server ${mock.issuer} registers no clients (it has no registration endpoint); it takes client ID metadata documents\n` +
          "hint: pass --client-id with the https URL of your client's metadata document, or the id of a client registered there\n",
      );
      await cleanUp(result);
    }, { issuer: { registration: false, clientIdMetadataDocuments: true } });
  });
});

Deno.test("a registration the server refuses ends with its words (exit 2); nothing is kept", async () => {
  await withWorld(async ({ mock, api }) => {
    const result = await run(["fetch", api.url], PERSON);
    assertEquals(result.code, EXIT.usage);
    assertEquals(
      result.stderr,
      `error: The server at ${
        new URL(mock.issuer).host
      } refused to register this tool as a client: it answered "invalid_client_metadata" (Registration is closed to new clients)\n` +
        "hint: register a client there yourself (redirect URI http://127.0.0.1/callback, any port) and pass --client-id ID\n",
    );
    assertEquals(mock.calls("register").length, 1);
    assertEquals(mock.calls("authorize").length, 0);
    assertEquals(await cached(result.home), []);
    await cleanUp(result);
  }, { issuer: { registration: "refuse" } });
});

Deno.test("a remembered client the server no longer knows is registered again, once; a second refusal ends the sign-in", async () => {
  await withWorld(async ({ mock, api }) => {
    const first = await run(["fetch", api.url], PERSON);
    assertEquals(first.code, EXIT.ok, first.stderr);
    const forgotten = mock.clients.at(-1)!.id;
    mock.clients.pop(); // the server forgets the client
    for (const file of await cached(first.home)) {
      if (!file.endsWith(".client.json")) await Deno.remove(`${first.home}/cache/${file}`); // the login is gone too
    }
    const again = await run(["fetch", api.url], { ...PERSON, home: first.home });
    assertEquals(again.code, EXIT.ok, again.stderr);
    assertStringIncludes(
      again.stderr,
      `note: ${new URL(mock.issuer).host} no longer knows the client this tool registered there; registering again\n`,
    );
    assertEquals(mock.calls("register").length, 2, "registered again once");
    const renewed = mock.clients.at(-1)!.id;
    assert(renewed !== forgotten);
    // The first sign-in's check, the refused one with the remembered client, the one with the new client.
    assertEquals(mock.preflights().map((r) => r.query.client_id), [forgotten, forgotten, renewed]);
    const registration = (await cached(first.home)).find((f) => f.endsWith(".client.json"))!;
    assertEquals(JSON.parse(await Deno.readTextFile(`${first.home}/cache/${registration}`)).clientId, renewed);

    // The server refuses every client now: registered again once, then the refusal ends it.
    mock.clients.pop();
    mock.intercept = (record) =>
      record.path === "/authorize"
        ? new Response("<h1>Sign-in failed</h1><p>Unknown client</p>", { status: 400 })
        : undefined;
    for (const file of await cached(first.home)) {
      if (!file.endsWith(".client.json")) await Deno.remove(`${first.home}/cache/${file}`);
    }
    const refused = await run(["fetch", api.url], { ...PERSON, home: first.home });
    assertEquals(refused.code, EXIT.usage);
    assertEquals(refused.stdout, "");
    assertEquals(mock.calls("register").length, 3, "once more, not in a loop");
    assertStringIncludes(
      refused.stderr,
      "error: The server rejected the sign-in request (HTTP 400): Sign-in failed: Unknown client\n",
    );
    await cleanUp(first);
  });
});

// ── Step-up ─────────────────────────────────────────────────────────────────────────────────────

Deno.test("insufficient_scope: signs in again once for the granted and the asked scopes, then the API answers", async () => {
  await withWorld(async ({ mock, api }) => {
    const result = await run(["fetch", `${api.url}/admin`], PERSON);
    assertEquals(result.code, EXIT.ok, result.stderr);
    assertEquals(JSON.parse(result.stdout).scope, "openid profile offline_access admin");
    assertEquals(mock.calls("authorize").map((r) => r.query.scope), [
      "openid profile offline_access",
      "openid profile offline_access admin",
    ]);
    assertEquals(mock.calls("register").length, 1, "the same client for the step-up");
    assertStringIncludes(
      result.stderr,
      `Logged in as alice@example.com\nThe API at ${
        new URL(api.url).host
      } asks for the scope "admin" (This needs the scope admin): signing in again\nOpening your browser`,
    );
    assertEquals(apiLog(api).filter((line) => line.endsWith("(token)")), [
      "GET /mcp/admin (token)",
      "GET /mcp/admin (token)",
    ]);
    // The entry now holds the wider grant: the next call needs no sign-in.
    const again = await run(["fetch", `${api.url}/admin`], { home: result.home });
    assertEquals(again.code, EXIT.ok, again.stderr);
    assertEquals(mock.calls("authorize").length, 2);
    await cleanUp(result);
  }, { api: { rules: { "/admin": { scope: "admin" } } } });
});

Deno.test("insufficient_scope refused again after the step-up ends with the API's words and its answer (exit 1), no loop", async () => {
  await withWorld(async ({ mock, api }) => {
    const result = await run(["fetch", `${api.url}/admin`], PERSON);
    assertEquals(result.code, EXIT.failure);
    assertEquals(JSON.parse(result.stdout), { error: "forbidden" }, "the API's answer is written");
    assert(
      result.stderr.endsWith(
        `error: The API at ${
          new URL(api.url).host
        } still answers "insufficient_scope" (This needs the scope admin) after signing in again for the scope "admin"\n` +
          "hint: your account may not be allowed that scope at the server: ask the API's operator\n",
      ),
      result.stderr,
    );
    assertEquals(mock.calls("authorize").length, 2, "one sign-in, one step-up");
    assertEquals(apiLog(api).filter((line) => line.endsWith("(token)")).length, 2);
    await cleanUp(result);
  }, {
    api: { rules: { "/admin": { scope: "admin" } } },
    // A server that never grants "admin", whatever is asked.
    grants: (scope) => scope.split(" ").filter((s) => s !== "admin").join(" "),
  });
});

Deno.test("insufficient_user_authentication (RFC 9470): signs in again once with acr_values, then the API answers; a second refusal ends it", async (t) => {
  await t.step("met", async () => {
    await withWorld(async ({ mock, api }) => {
      const result = await run(["fetch", `${api.url}/payments`], PERSON);
      assertEquals(result.code, EXIT.ok, result.stderr);
      assertEquals(mock.calls("authorize").map((r) => r.query.acr_values ?? null), [null, "urn:example:mfa"]);
      assertStringIncludes(
        result.stderr,
        `The API at ${
          new URL(api.url).host
        } asks for acr_values "urn:example:mfa" (A stronger sign-in is required): signing in again\n`,
      );
      const entry = JSON.parse(
        await Deno.readTextFile(
          `${result.home}/cache/${(await cached(result.home)).find((f) => !f.endsWith(".client.json"))}`,
        ),
      );
      assertEquals(entry.acr, "urn:example:mfa", "the ID token's acr is kept");
      await cleanUp(result);
    }, { api: { rules: { "/payments": { acr: "urn:example:mfa" } } } });
  });
  await t.step("refused twice", async () => {
    await withWorld(async ({ mock, api }) => {
      mock.acr = "ignore";
      const result = await run(["fetch", `${api.url}/payments`], PERSON);
      assertEquals(result.code, EXIT.failure);
      assert(
        result.stderr.endsWith(
          `error: The API at ${
            new URL(api.url).host
          } still answers "insufficient_user_authentication" (A stronger sign-in is required) after signing in again for acr_values "urn:example:mfa"\n` +
            "hint: the server did not sign you in as the API asks: ask the API's operator\n",
        ),
        result.stderr,
      );
      assertEquals(mock.calls("authorize").length, 2);
      await cleanUp(result);
    }, { api: { rules: { "/payments": { acr: "urn:example:mfa" } } } });
  });
});

Deno.test("both step-ups in one call, each once: the scope, then a stronger sign-in", async () => {
  await withWorld(async ({ mock, api }) => {
    const result = await run(["fetch", `${api.url}/both`], PERSON);
    assertEquals(result.code, EXIT.ok, result.stderr);
    assertEquals(
      mock.calls("authorize").map((r) => `${r.query.scope} | ${r.query.acr_values ?? "-"}`),
      [
        "openid profile offline_access | -",
        "openid profile offline_access admin | -",
        "openid profile offline_access admin | urn:example:mfa",
      ],
    );
    await cleanUp(result);
  }, { api: { rules: { "/both": { scope: "admin", acr: "urn:example:mfa" } } } });
});

Deno.test("a step-up with nobody to sign in (no terminal): exit 4 with the command to run, the API's answer written", async () => {
  await withWorld(async ({ api }) => {
    const first = await run(["fetch", api.url], PERSON);
    assertEquals(first.code, EXIT.ok, first.stderr);
    const result = await run(["fetch", `${api.url}/admin`], { home: first.home });
    assertEquals(result.code, EXIT.loginRequired);
    assertEquals(JSON.parse(result.stdout), { error: "forbidden" });
    assertEquals(
      result.stderr,
      `error: The API at ${new URL(api.url).host} asks for the scope "admin" (This needs the scope admin)\n` +
        `hint: sign in again for it: run "oauth-login login --resource ${api.url} --scope 'openid profile offline_access admin'" (or pass --interactive to let this command sign you in)\n`,
    );
    await cleanUp(first);
  }, { api: { rules: { "/admin": { scope: "admin" } } } });
});

// ── The other commands ──────────────────────────────────────────────────────────────────────────

Deno.test("login --resource URL with no issuer signs in for the API; token, whoami and logout --resource URL find that entry", async () => {
  await withWorld(async ({ mock, api }) => {
    const login = await run(["login", "--resource", api.url], PERSON);
    assertEquals(login.code, EXIT.ok, login.stderr);
    assertEquals(login.stdout, "");
    assertEquals(
      apiLog(api),
      ["GET /mcp", "GET /.well-known/oauth-protected-resource/mcp"],
      "a GET reads the challenge",
    );

    const token = await run(["token", "--resource", api.url], { home: login.home });
    assertEquals(token.code, EXIT.ok, token.stderr);
    assertEquals(token.stderr, "");
    assert(mock.accessTokens.get(token.stdout.trim())?.resource === api.resource, "the token is the API's");

    const whoami = await run(["whoami", "--resource", api.url], { home: login.home });
    assertEquals(whoami.code, EXIT.ok, whoami.stderr);
    assertMatch(
      whoami.stdout,
      new RegExp(
        `^Logged in to ${escape(mock.issuer)} as alice@example\\.com\\n  client:  dyn-\\S+\\n  for:     the API ${
          escape(api.resource)
        }\\n  scopes:  openid profile offline_access\\n`,
      ),
    );

    const logout = await run(["logout", "--resource", api.url], { home: login.home });
    assertEquals(logout.code, EXIT.ok, logout.stderr);
    assertEquals(logout.stderr, `Logged out of ${mock.issuer}\n`);
    assertEquals(mock.revoked.length, 2, "the refresh and the access token revoked");
    assertEquals(
      (await cached(login.home)).map((f) => f.replace(/^.*-[0-9a-f]{16}/, "NAME")),
      ["NAME.client.json"],
      "the registration stays: the next sign-in reuses it",
    );
    const gone = await run(["whoami", "--resource", api.url], { home: login.home });
    assertEquals(gone.code, EXIT.loginRequired);
    assertEquals(
      gone.stderr,
      `error: Not signed in for the API ${api.url}\nhint: run "oauth-login login --resource ${api.url}"\n`,
    );
    const again = await run(["logout", "--resource", api.url], { home: login.home });
    assertEquals(again.stderr, `Not signed in for the API ${api.url}; nothing to do\n`);
    await cleanUp(login);
  });
});

Deno.test("logout --all revokes an API's entry and leaves the client registrations", async () => {
  await withWorld(async ({ mock, api }) => {
    const login = await run(["login", "--resource", api.url], PERSON);
    assertEquals(login.code, EXIT.ok, login.stderr);
    const result = await run(["logout", "--all"], { home: login.home });
    assertEquals(result.code, EXIT.ok, result.stderr);
    assertMatch(
      result.stderr,
      /^Logged out of http:\/\/127\.0\.0\.1:\d+ \(client dyn-\S+\): revoked at the server and removed here\n$/,
    );
    assertEquals(mock.revoked.length, 2);
    assertEquals((await cached(login.home)).filter((f) => f.endsWith(".client.json")).length, 1);
    assertEquals((await cached(login.home)).length, 1);
    await cleanUp(login);
  });
});

Deno.test("with nobody to sign in, fetch and token exit 4 after one request without a token; nothing is registered", async (t) => {
  for (const command of [["fetch"], ["token", "--resource"]]) {
    await t.step(command[0], async () => {
      await withWorld(async ({ mock, api }) => {
        const result = await run([...command, api.url]);
        assertEquals(result.code, EXIT.loginRequired);
        assertEquals(result.stdout, "");
        assertEquals(
          result.stderr,
          `error: Not signed in for the API ${api.url}\n` +
            `hint: run "oauth-login login --resource ${api.url}" (or pass --interactive to let this command sign you in)\n`,
        );
        assertEquals(apiLog(api), command[0] === "fetch" ? ["GET /mcp"] : []);
        assertEquals(mock.requests, []);
        await cleanUp(result);
      });
    });
  }
});

Deno.test("an API that answers without a token is printed as it is, and nobody signs in", async () => {
  await withWorld(async ({ mock, api }) => {
    const result = await run(["fetch", `${api.origin}/.well-known/oauth-protected-resource`]);
    assertEquals(result.code, EXIT.ok, result.stderr);
    assertEquals(JSON.parse(result.stdout).resource, api.resource);
    assertEquals(mock.requests, []);
    await cleanUp(result);
  });
});

// ── Trust ───────────────────────────────────────────────────────────────────────────────────────

Deno.test("the person's own client settings never go to a server only the API named: set aside with a warning, a client registered instead", async () => {
  await withWorld(async ({ mock, api }) => {
    const secret = "my-own-secret-0123456789";
    const result = await run(["fetch", api.url], {
      ...PERSON,
      env: { OAUTH_CLIENT_ID: "my-own-client", OAUTH_CLIENT_SECRET: secret },
      files: { ".env": { OAUTH_SCOPE: "read:everything" } },
    });
    assertEquals(result.code, EXIT.ok, result.stderr);
    assert(
      result.stderr.startsWith(
        'warning: Not using OAUTH_CLIENT_ID from the environment, OAUTH_CLIENT_SECRET from the environment and OAUTH_SCOPE from ".env" in the working directory: the API\'s metadata names the server to sign in at, and these were set for your own; pass --client-id (and --client-secret, --scope) to use them for this call\n',
      ),
      result.stderr,
    );
    for (const request of mock.requests) {
      assert(!JSON.stringify(request).includes(secret), `the secret reached ${request.path}`);
      assert(!JSON.stringify(request).includes("my-own-client"), `the client id reached ${request.path}`);
      assertEquals(request.headers.authorization, undefined);
    }
    assertEquals(mock.calls("register").length, 1);
    assertEquals(mock.calls("authorize")[0].query.scope, "openid profile offline_access");
    assertNoLeaks(result, [secret]);
    await cleanUp(result);
  });
});

Deno.test("a --client-id on the command line is the client at the server the API names: no registration", async () => {
  await withWorld(async ({ mock, api }) => {
    const result = await run(["fetch", "--client-id", "cli-public", api.url], PERSON);
    assertEquals(result.code, EXIT.ok, result.stderr);
    assertEquals(mock.calls("register").length, 0);
    assertEquals(mock.calls("authorize")[0].query.client_id, "cli-public");
    assert(!result.stderr.includes("Registered"), result.stderr);
    // Found again without the flag: the entry knows its client.
    const again = await run(["fetch", api.url], { home: result.home });
    assertEquals(again.code, EXIT.ok, again.stderr);
    await cleanUp(result);
  });
});

Deno.test("a client ID metadata document given as --client-id is sent as it is to a server that takes them", async () => {
  const document = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (request) =>
    Response.json({
      client_id: request.url,
      client_name: "my tool",
      redirect_uris: ["http://127.0.0.1/callback"],
      token_endpoint_auth_method: "none",
    }));
  const id = `http://127.0.0.1:${document.addr.port}/client.json`;
  try {
    await withWorld(async ({ mock, api }) => {
      const result = await run(["fetch", "--client-id", id, api.url], PERSON);
      assertEquals(result.code, EXIT.ok, result.stderr);
      assertEquals(mock.calls("authorize")[0].query.client_id, id);
      assertEquals(mock.calls("token")[0].form.client_id, id);
      assertEquals(mock.calls("register").length, 0);
      await cleanUp(result);
    }, { issuer: { registration: false, clientIdMetadataDocuments: true } });
  } finally {
    await document.shutdown();
  }
});

Deno.test("--issuer picks among the servers the API names; one it does not name is refused (exit 2)", async (t) => {
  await t.step("named", async () => {
    await withWorld(async ({ mock, api }) => {
      api.authorizationServers = ["https://first.example", mock.issuer];
      const result = await run(["fetch", "--issuer", mock.issuer, api.url], PERSON);
      assertEquals(result.code, EXIT.ok, result.stderr);
      assertEquals(mock.calls("register").length, 1);
      await cleanUp(result);
    });
  });
  await t.step("not named", async () => {
    await withWorld(async ({ mock, api }) => {
      const result = await run(["fetch", api.url], { ...PERSON, env: { OAUTH_ISSUER: "https://other.example" } });
      assertEquals(result.code, EXIT.usage);
      assertEquals(
        result.stderr,
        `error: The API at ${
          new URL(api.url).host
        } takes tokens from "${mock.issuer}", not from "https://other.example" (OAUTH_ISSUER in the environment)\n` +
          "hint: drop OAUTH_ISSUER in the environment to sign in where the API says\n",
      );
      assertEquals(mock.requests, []);
      await cleanUp(result);
    });
  });
});

Deno.test("a remembered registration whose client secret has expired is registered again (client_secret_expires_at)", async () => {
  await withWorld(async ({ mock, api }) => {
    const home = await Deno.makeTempDir({ prefix: "oauth-login-resource-" });
    const { registrationName } = (await import("../login.ts")).testing;
    const redirects = ["http://127.0.0.1/callback", "http://[::1]/callback", "http://localhost/callback"];
    const name = registrationName(mock.issuer, redirects);
    await Deno.mkdir(`${home}/cache`, { mode: 0o700 });
    const stale = {
      version: 1,
      issuer: mock.issuer,
      redirectUris: redirects,
      clientId: "expired-client",
      clientSecret: "expired-secret-0123456789",
      clientSecretExpiresAt: Math.floor(Date.now() / 1000) - 10,
      authMethod: "client_secret_basic",
      registeredAt: Date.now() - 86_400_000,
    };
    await Deno.writeTextFile(`${home}/cache/${name}.json`, JSON.stringify(stale), { mode: 0o600 });
    const result = await run(["fetch", api.url], { ...PERSON, home });
    assertEquals(result.code, EXIT.ok, result.stderr);
    assertEquals(mock.calls("register").length, 1);
    assert(mock.requests.every((r) => !JSON.stringify(r).includes("expired-")), "the expired client was not used");
    const kept = JSON.parse(await Deno.readTextFile(`${home}/cache/${name}.json`));
    assertEquals(kept.clientId, mock.clients.at(-1)!.id);
    await cleanUp(result);
  });
});

Deno.test("an API naming its metadata at a plain-http host, or naming no server, is refused", async (t) => {
  await t.step("metadata over http elsewhere", async () => {
    await withWorld(async ({ mock, api }) => {
      const result = await run(["fetch", api.url], PERSON);
      assertEquals(result.code, EXIT.failure);
      assertEquals(
        result.stderr,
        `error: The API at ${
          new URL(api.url).host
        } names metadata that is not an https URL: "http://metadata.example/x"\n` +
          "hint: an API names plain-http metadata only on this machine; report it to the API's operator\n",
      );
      assertEquals(mock.requests, []);
      await cleanUp(result);
    }, { api: { metadataUrl: () => "http://metadata.example/x" } });
  });
  await t.step("no authorization server", async () => {
    await withWorld(async ({ mock, api }) => {
      api.authorizationServers = [];
      const result = await run(["fetch", api.url], PERSON);
      assertEquals(result.code, EXIT.failure);
      assertStringIncludes(
        result.stderr,
        `error: The metadata of the API at ${new URL(api.url).host} names no authorization server\n`,
      );
      assertEquals(mock.requests, []);
      await cleanUp(result);
    });
  });
});

// ── --acr-values, --max-age ─────────────────────────────────────────────────────────────────────

Deno.test("token --max-age: a sign-in older than that is made again with max_age, once; with nobody to sign in, exit 4", async () => {
  await withWorld(async ({ mock, api }) => {
    const login = await run(["login", "--resource", api.url], PERSON);
    assertEquals(login.code, EXIT.ok, login.stderr);
    const later = Date.now() + 600_000;
    const refused = await run(["token", "--resource", api.url, "--max-age", "60"], {
      home: login.home,
      now: () => later,
    });
    assertEquals(refused.code, EXIT.loginRequired);
    assertEquals(
      refused.stderr,
      `error: The cached sign-in at ${mock.issuer} is not enough: it dates from 10 minutes ago, more than --max-age 60 seconds ago\n` +
        `hint: run "oauth-login login --resource ${api.url} --scope 'openid profile offline_access' --max-age 60" (or pass --interactive to let this command sign you in)\n`,
    );
    const token = await run(["token", "--resource", api.url, "--max-age", "60"], {
      ...PERSON,
      home: login.home,
      now: () => later,
    });
    assertEquals(token.code, EXIT.ok, token.stderr);
    assertEquals(mock.calls("authorize").map((r) => r.query.max_age ?? null), [null, "60"]);
    await cleanUp(login);
  });
});

// ── doctor URL ──────────────────────────────────────────────────────────────────────────────────

Deno.test("doctor URL shows each step (the challenge, the metadata, the server, the scope, the client) without signing in", async () => {
  await withWorld(async ({ mock, api }) => {
    const result = await run(["doctor", api.url]);
    assertEquals(result.code, EXIT.ok, result.stdout);
    const lines = result.stdout.split("\n").filter((line) => /^\w+\s+(resource|config)\s/.test(line));
    const host = new URL(mock.issuer).host;
    assertEquals(lines.filter((line) => line.includes(" resource ")), [
      `ok    resource   ${api.url} answered HTTP 401, naming its metadata`,
      `ok    resource   ${api.origin}/.well-known/oauth-protected-resource/mcp names the resource ${api.resource}`,
      `ok    resource   the API takes tokens from ${mock.issuer}`,
      "ok    resource   scope to ask for: openid profile offline_access",
      `ok    resource   client: "${mock.clients.at(-1)!.id}", registered now (RFC 7591)`,
    ]);
    assertStringIncludes(
      result.stdout,
      `ok    config     issuer: none: the API at ${api.url} names its server (RFC 9728)\n`,
    );
    assertStringIncludes(
      result.stdout,
      `ok    client     client id "${mock.clients.at(-1)!.id}": known to the server\n`,
    );
    assertEquals(mock.calls("authorize").length, 0, "no sign-in");
    assertEquals(mock.calls("token").length, 0);
    assertEquals(host.length > 0, true);
    // With a server and a client of your own, the API is not asked: doctor says so.
    const own = await run(["doctor", "--issuer", mock.issuer, "--client-id", "cli-public", api.url]);
    assertStringIncludes(
      own.stdout,
      `warn  config     ${api.url}: its metadata is not asked, as your settings name the server and the client\n`,
    );
    assertEquals(api.requests.filter((r) => r.path.includes("well-known")).length, 1, "only the first doctor asked");
    await cleanUp(own);
    await cleanUp(result);
  });
});

// ── Pure rules ──────────────────────────────────────────────────────────────────────────────────

Deno.test("resourceMismatch: the URL or a path above it on the same origin, segment by segment", async () => {
  const { resourceMismatch, chooseServer } = (await import("../login.ts")).testing;
  const url = new URL("https://api.example/mcp/v1/tools?x=1");
  for (
    const ok of [
      "https://api.example",
      "https://api.example/",
      "https://api.example/mcp",
      "https://api.example/mcp/v1/tools",
    ]
  ) {
    assertEquals(resourceMismatch(url, ok), undefined, ok);
  }
  for (
    const bad of [
      "https://api.example/mc",
      "https://api.example/mcp/v1/tool",
      "http://api.example/mcp",
      "https://evil.example/",
    ]
  ) {
    assertEquals(resourceMismatch(url, bad), `claims the resource "${bad}"`, bad);
  }
  assertEquals(resourceMismatch(url, 42), "names no valid resource (42)");
  assertEquals(
    resourceMismatch(url, "https://user:pw@api.example/mcp"),
    'names no valid resource ("https://user:pw@api.example/mcp")',
    "credentials in a resource identifier are refused",
  );
  assertEquals(resourceMismatch(url, "https://api.example/#x"), 'names no valid resource ("https://api.example/#x")');
  // An https API never names a plain-http server; a loopback API may (for development).
  const metadata = { resource: "https://api.example/", authorization_servers: ["http://127.0.0.1:9/"] };
  let refused: unknown;
  try {
    chooseServer(metadata, url);
  } catch (error) {
    refused = error;
  }
  assertEquals(
    (refused as Error).message,
    'The metadata of the API at api.example names an authorization server that is not an https URL: "http://127.0.0.1:9/"',
  );
  assertEquals(chooseServer(metadata, new URL("http://127.0.0.1:8/mcp")), "http://127.0.0.1:9");
});

// ── More of the same rules ──────────────────────────────────────────────────────────────────────

Deno.test("a refresh refused with invalid_client (the server forgot the client this tool registered): signed in again with a client registered again", async () => {
  await withWorld(async ({ mock, api }) => {
    const login = await run(["login", "--resource", api.url], PERSON);
    assertEquals(login.code, EXIT.ok, login.stderr);
    mock.clients.pop(); // the server forgets the client
    const later = Date.now() + 2 * 3_600_000; // the access token has expired
    const token = await run(["token", "--resource", api.url], { ...PERSON, home: login.home, now: () => later });
    assertEquals(token.code, EXIT.ok, token.stderr);
    assertStringIncludes(
      token.stderr,
      'warning: The session has ended at the server (Cannot refresh the access token: the server answered "invalid_client" (Client authentication failed)); the cached tokens were removed\n',
    );
    assertStringIncludes(token.stderr, "registering again\n");
    assertEquals(mock.calls("register").length, 2);
    assertEquals(mock.calls("token").map((r) => r.form.grant_type), [
      "authorization_code",
      "refresh_token",
      "authorization_code",
    ]);
    assert(mock.accessTokens.get(token.stdout.trim())?.clientId === mock.clients.at(-1)!.id);
    await cleanUp(login);
  });
});

Deno.test("a step-up for a login you configured: a stronger sign-in yes (acr_values), a wider scope no (your --scope decides)", async () => {
  await withWorld(async ({ mock, api }) => {
    const own = ["--issuer", mock.issuer, "--client-id", "cli-public", "--resource", api.resource];
    const payments = await run(["fetch", ...own, `${api.url}/payments`], PERSON);
    assertEquals(payments.code, EXIT.ok, payments.stderr);
    assertEquals(mock.calls("authorize").map((r) => r.query.acr_values ?? null), [null, "urn:example:mfa"]);
    assertEquals(mock.calls("register").length, 0);
    const admin = await run(["fetch", ...own, `${api.url}/admin`], { ...PERSON, home: payments.home });
    assertEquals(admin.code, EXIT.failure);
    assertEquals(mock.calls("authorize").length, 2, "no sign-in for a scope you did not ask for");
    assertEquals(
      admin.stderr,
      `error: The server at ${new URL(api.url).host} answered GET /mcp/admin with HTTP 403 ("insufficient_scope")\n` +
        "hint: the token is valid but not allowed to do this: check the scopes the API needs (--scope)\n",
    );
    await cleanUp(payments);
  }, { api: { rules: { "/payments": { acr: "urn:example:mfa" }, "/admin": { scope: "admin" } } } });
});

Deno.test("a registration answer this tool cannot use is refused: an authentication it cannot do, or a secret method without a secret", async (t) => {
  for (
    const [what, answer, detail] of [
      ["private_key_jwt", { client_id: "x", token_endpoint_auth_method: "private_key_jwt" }, '"private_key_jwt"'],
      [
        "no secret",
        { client_id: "x", token_endpoint_auth_method: "client_secret_basic" },
        '"client_secret_basic" but sent no secret',
      ],
    ] as const
  ) {
    await t.step(what, async () => {
      await withWorld(async ({ mock, api }) => {
        mock.intercept = (record) => record.path === "/register" ? Response.json(answer, { status: 201 }) : undefined;
        const result = await run(["fetch", api.url], PERSON);
        assertEquals(result.code, EXIT.failure);
        assertEquals(
          result.stderr,
          `error: The server at ${
            new URL(mock.issuer).host
          } registered a client that authenticates with ${detail}, which this tool cannot use\n` +
            "hint: register a public client there yourself and pass --client-id ID\n",
        );
        assertEquals(await cached(result.home), []);
        await cleanUp(result);
      });
    });
  }
});

Deno.test("a 403 without a Bearer challenge to a request without a token is the API's answer, not a reason to sign in", async () => {
  await withWorld(async ({ mock }) => {
    const forbidden = Deno.serve(
      { hostname: "127.0.0.1", port: 0, onListen() {} },
      () => Response.json({ error: "closed on Sundays" }, { status: 403 }),
    );
    try {
      const result = await run(["fetch", `http://127.0.0.1:${forbidden.addr.port}/x`], PERSON);
      assertEquals(result.code, EXIT.failure);
      assertEquals(result.stdout, '{"error":"closed on Sundays"}');
      assertStringIncludes(result.stderr, "answered GET /x with HTTP 403\n");
      assertEquals(mock.requests, []);
      await cleanUp(result);
    } finally {
      await forbidden.shutdown();
    }
  });
});

Deno.test("an API's entry is refreshed like any other: for its resource, with the client this tool registered", async () => {
  await withWorld(async ({ mock, api }) => {
    const login = await run(["login", "--resource", api.url], PERSON);
    assertEquals(login.code, EXIT.ok, login.stderr);
    const later = Date.now() + 2 * 3_600_000; // the access token has expired
    const result = await run(["fetch", `${api.url}/x`], { home: login.home, now: () => later });
    assertEquals(result.code, EXIT.ok, result.stderr);
    assertEquals(result.stderr, "");
    assertEquals(JSON.parse(result.stdout).path, "/mcp/x");
    const refresh = mock.calls("token").at(-1)!.form;
    assertEquals(refresh.grant_type, "refresh_token");
    assertEquals(refresh.resource, api.resource);
    assertEquals(refresh.client_id, mock.clients.at(-1)!.id);
    assertEquals(mock.calls("authorize").length, 1, "no sign-in");
    await cleanUp(login);
  });
});

// ── Logins without a person (issue 22) and an API's metadata ────────────────────────────────────

/** A grant without a person with the confidential client, whose secret is in the environment. */
const MACHINE: RunOptions = { env: { OAUTH_CLIENT_SECRET: CONFIDENTIAL_CLIENT.secret! } };

Deno.test("a grant never lets an API's metadata choose the server: without an issuer it is a missing setting, and nothing is asked", async () => {
  await withWorld(async ({ mock, api }) => {
    for (const command of [["fetch", api.url], ["token", "--resource", api.url]]) {
      const result = await run(
        [...command, "--grant", "client_credentials", "--client-id", CONFIDENTIAL_CLIENT.id],
        MACHINE,
      );
      assertEquals(result.code, EXIT.usage, result.stderr);
      assert(result.stderr.startsWith("error: No issuer is configured\nhint: pass --issuer URL"), result.stderr);
      assertEquals(apiLog(api), [], "the API was not asked where to sign in");
      assertEquals(mock.requests, [], "no server was sent the client's secret");
      await cleanUp(result);
    }
  });
});

Deno.test("a grant's entry and an API's are never taken for each other: each command finds its own, and a grant's record under an API's name is ignored", async () => {
  await withWorld(async ({ mock, api }) => {
    const person = await run(["login", "--resource", api.url], PERSON);
    assertEquals(person.code, EXIT.ok, person.stderr);
    const home = person.home;
    const grant = ["--issuer", mock.issuer, "--client-id", CONFIDENTIAL_CLIENT.id, "--grant", "client_credentials"];
    const machine = await run(["token", ...grant, "--resource", api.resource], { ...MACHINE, home });
    assertEquals(machine.code, EXIT.ok, machine.stderr);
    const personToken = (await run(["token", "--resource", api.url], { home })).stdout.trim();
    assert(personToken !== machine.stdout.trim(), "two entries");
    assertEquals(mock.accessTokens.get(personToken)?.sub, mock.user.sub);
    assertEquals(mock.accessTokens.get(machine.stdout.trim())?.sub, CONFIDENTIAL_CLIENT.id);
    const whoami = await run(["whoami", "--resource", api.url], { home });
    assertStringIncludes(whoami.stdout, "as alice@example.com\n");
    const machineWhoami = await run(["whoami", ...grant, "--resource", api.resource], { ...MACHINE, home });
    assertStringIncludes(machineWhoami.stdout, `for the client ${CONFIDENTIAL_CLIENT.id} (client credentials)\n`);
    // A grant's record in the file of the API's entry (written by hand, or by anything but this tool's sign-in
    // for the API) is not the person's sign-in for the API, even when it names the API's resource.
    const files = await cached(home);
    const text = (name: string) => Deno.readTextFileSync(`${home}/cache/${name}`);
    const apiFile = files.find((name) =>
      !name.endsWith(".client.json") && "protectedResource" in JSON.parse(text(name))
    )!;
    const grantFile = files.find((name) => !name.endsWith(".client.json") && "grant" in JSON.parse(text(name)))!;
    const forged = { ...JSON.parse(text(grantFile)), protectedResource: { resource: api.resource } };
    await fileStorage(`${home}/cache`).write(apiFile, JSON.stringify(forged));
    const ignored = await run(["whoami", "--resource", api.url], { home });
    assertEquals(ignored.code, EXIT.loginRequired, ignored.stdout);
    assertStringIncludes(ignored.stderr, `is unreadable or not for this API; it is ignored\n`);
    await cleanUp(person);
  });
});

Deno.test("a grant never steps up: an API's insufficient_scope ends fetch with its words and the --scope to add; with it, the API answers", async () => {
  let world: World | undefined;
  await withWorld(async ({ mock, api }) => {
    world = { mock, api };
    const grant = ["--issuer", mock.issuer, "--client-id", CONFIDENTIAL_CLIENT.id, "--grant", "client_credentials"];
    const refused = await run(["fetch", ...grant, "--resource", api.resource, `${api.url}/admin`], MACHINE);
    assertEquals(refused.code, EXIT.failure);
    assertEquals(JSON.parse(refused.stdout), { error: "forbidden" }, "the API's answer is written");
    assertEquals(
      refused.stderr,
      `error: The API at ${new URL(api.url).host} asks for the scope "admin" (This needs the scope admin)\n` +
        "hint: a grant without a person asks for the scope it is configured with: add it to --scope\n",
    );
    assertEquals(mock.calls("token").length, 1, "the grant ran once, not again for a wider scope");
    const followed = await run(
      ["fetch", ...grant, "--resource", api.resource, "--scope", "admin", `${api.url}/admin`],
      { ...MACHINE, home: refused.home },
    );
    assertEquals(followed.code, EXIT.ok, followed.stderr);
    assertEquals(JSON.parse(followed.stdout).scope, "admin");
    await cleanUp(refused);
  }, {
    api: {
      rules: { "/admin": { scope: "admin" } },
      // The mock records no resource for client credentials: its tokens are taken as this API's.
      verify: (token) => {
        const info = world?.mock.accessTokens.get(token);
        return info && { scope: info.scope, audience: world!.api.resource, sub: info.sub };
      },
    },
  });
});
