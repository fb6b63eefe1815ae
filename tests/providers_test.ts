/**
 * Providers: manual endpoints, provider presets and the dialects of real servers (issue 14).
 *
 * Each preset gets a personality: a small table of overrides on the one mock issuer (paths, no
 * discovery, field names, HTTP-200 errors, comma scopes, a "who am I" endpoint), built from the
 * provider's public documentation (see /work/shared/PROVIDERS.md). The preset's real URLs are
 * pointed at the loopback mock through `Deps.presetBase`; no test reaches a real provider.
 *
 * @module
 */
import { EXIT, testing } from "../login.ts";
const { inferProvider, issuerDifference, normaliseAnswer, resolveConfig } = testing;
import { assertNoLeaks, cleanUp, json, type Run, run, type RunOptions, secretsOf, WAITING_LINE } from "./_harness.ts";
import {
  CONFIDENTIAL_CLIENT,
  type MockClient,
  type MockOptions,
  type MockUser,
  scriptedBrowser,
  type ServedMock,
  serveMockIssuer,
} from "./mock_issuer.ts";
import { assert, assertEquals, assertMatch, assertStringIncludes } from "./assert.ts";

// ── Personalities ───────────────────────────────────────────────────────────────────────────────

interface Personality {
  preset: string;
  /** Overrides on the mock, from the provider's documentation. */
  mock: MockOptions;
  /** Metadata changes once the mock's address is known. */
  setup?: (mock: ServedMock) => void;
  client: MockClient;
  /** The flags beyond --client-id (and the secret, set in the environment). */
  args: (mock: ServedMock) => string[];
  /** Who the login must name. */
  user: string;
  /** Parameters the authorization request must carry. */
  authorize?: Record<string, string>;
  device: boolean;
  refresh: boolean;
  revoke: boolean;
}

const TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const PERSON: MockUser = { sub: "u-1001", username: "alice", email: "alice@example.com", name: "Alice" };

const publicClient = (id: string, redirectUris = ["http://127.0.0.1/callback"]): MockClient => ({
  id,
  auth: "none",
  redirectUris,
});

const PERSONALITIES: Personality[] = [
  {
    // No discovery; form or JSON answers; errors with HTTP 200; comma scopes; who = GET /user's login.
    preset: "github",
    mock: {
      discovery: "none",
      issParameter: false,
      paths: {
        authorize: "/login/oauth/authorize",
        token: "/login/oauth/access_token",
        device_authorization: "/login/device/code",
        device: "/login/device",
        revoke: "/applications/Iv1.8a61f9b3a7aba766/token",
      },
      dialect: { status200Errors: true, scopeSeparator: ",", tokenType: "bearer", omitExpiresIn: true },
      whoAmI: { path: "/user", body: () => ({ login: "octocat", id: 583231, name: "The Octocat" }) },
    },
    // Revocation is GitHub's REST API: DELETE with Basic client credentials and a JSON body; 204.
    setup: (mock) => {
      mock.intercept = async (record, _url, request) => {
        if (record.method !== "DELETE" || record.path !== "/applications/Iv1.8a61f9b3a7aba766/token") return undefined;
        const expected = `Basic ${btoa("Iv1.8a61f9b3a7aba766:gh-client-secret-0123456789")}`;
        const body = await request.json();
        if (record.headers.authorization !== expected || !mock.accessTokens.has(body.access_token)) {
          return json({ message: "Not Found" }, 404);
        }
        mock.accessTokens.delete(body.access_token);
        mock.revoked.push(body.access_token);
        return new Response(null, { status: 204 });
      };
    },
    client: {
      id: "Iv1.8a61f9b3a7aba766",
      secret: "gh-client-secret-0123456789",
      auth: "client_secret_post",
      redirectUris: ["http://127.0.0.1/callback"],
    },
    args: () => ["--provider", "github", "--scope", "repo gist"],
    user: "octocat",
    device: true,
    refresh: false,
    revoke: true,
  },
  {
    // Discovery, but the device endpoint (/oauth/authorize_device) is missing from it; RTs rotate.
    preset: "gitlab",
    mock: {
      discovery: "oidc",
      issParameter: false,
      rotateRefreshTokens: true,
      paths: {
        authorize: "/oauth/authorize",
        token: "/oauth/token",
        revoke: "/oauth/revoke",
        introspect: "/oauth/introspect",
        userinfo: "/oauth/userinfo",
        device_authorization: "/oauth/authorize_device",
        device: "/oauth/device",
      },
      dialect: { refreshTokenWhen: () => true, idTokenClaims: () => ({ preferred_username: "alice.gl" }) },
    },
    setup: (mock) => {
      mock.metadata.device_authorization_endpoint = undefined;
      mock.metadata.scopes_supported = ["api", "read_user", "openid", "profile", "email"];
    },
    client: publicClient("gitlab-app-id"),
    args: () => ["--provider", "gitlab"],
    user: "alice.gl",
    device: true,
    refresh: true,
    revoke: true,
  },
  {
    // access_type=offline + prompt=consent for a refresh token; a "not secret" client secret;
    // the device answer says verification_url; ID tokens may say iss "accounts.google.com".
    preset: "google",
    mock: {
      discovery: "oidc",
      issParameter: false,
      paths: {
        authorize: "/o/oauth2/v2/auth",
        token: "/token",
        device_authorization: "/device/code",
        device: "/device",
        revoke: "/revoke",
        userinfo: "/v1/userinfo",
      },
      dialect: {
        verificationUriName: "verification_url",
        refreshTokenWhen: (p) =>
          !p.has("response_type") || (p.get("access_type") === "offline" && p.get("prompt") === "consent"),
        idTokenClaims: () => ({ iss: "accounts.google.com", preferred_username: undefined }),
      },
    },
    setup: (mock) => {
      mock.metadata.token_endpoint_auth_methods_supported = ["client_secret_post", "client_secret_basic"];
      mock.metadata.scopes_supported = ["openid", "email", "profile"];
      mock.metadata.code_challenge_methods_supported = ["plain", "S256"];
      mock.metadata.introspection_endpoint = undefined;
      mock.device.interval = 5;
    },
    client: {
      id: "123-abc.apps.googleusercontent.com",
      secret: "GOCSPX-desktop-not-so-secret",
      auth: "client_secret_basic",
      redirectUris: ["http://127.0.0.1/callback"],
    },
    args: () => ["--provider", "google"],
    user: "alice@example.com",
    authorize: { access_type: "offline", prompt: "consent", scope: "openid email profile" },
    device: true,
    refresh: true,
    revoke: true,
  },
  {
    // common: the metadata's issuer is the {tenantid} template; ID tokens carry tid; localhost redirect.
    preset: "entra",
    mock: {
      path: "/common/v2.0",
      discovery: "oidc",
      issParameter: false,
      paths: {
        authorize: "/common/oauth2/v2.0/authorize",
        token: "/common/oauth2/v2.0/token",
        device_authorization: "/common/oauth2/v2.0/devicecode",
        device: "/common/oauth2/deviceauth",
        userinfo: "/oidc/userinfo",
        keys: "/common/discovery/v2.0/keys",
      },
      dialect: {
        localhostAnyPort: true,
        idTokenClaims: (mock) => ({
          iss: `${new URL(mock.issuer).origin}/${TENANT}/v2.0`,
          tid: TENANT,
          preferred_username: "adele@contoso.com",
        }),
      },
    },
    setup: (mock) => {
      mock.metadata.issuer = `${new URL(mock.issuer).origin}/{tenantid}/v2.0`;
      mock.metadata.code_challenge_methods_supported = undefined;
      mock.metadata.revocation_endpoint = undefined;
      mock.metadata.introspection_endpoint = undefined;
    },
    client: publicClient("0fa1b2c3-entra-app", ["http://localhost/"]),
    args: () => ["--provider", "entra"],
    user: "adele@contoso.com",
    device: true,
    refresh: true,
    revoke: false,
  },
  {
    preset: "okta",
    mock: {
      path: "/oauth2/default",
      paths: {
        authorize: "/oauth2/default/v1/authorize",
        token: "/oauth2/default/v1/token",
        device_authorization: "/oauth2/default/v1/device/authorize",
        revoke: "/oauth2/default/v1/revoke",
        introspect: "/oauth2/default/v1/introspect",
        userinfo: "/oauth2/default/v1/userinfo",
        keys: "/oauth2/default/v1/keys",
      },
    },
    client: publicClient("0oa1okta"),
    args: (mock) => ["--provider", "okta", "--issuer", mock.issuer],
    user: "alice",
    device: true,
    refresh: true,
    revoke: true,
  },
  {
    // The issuer has a trailing slash; refresh tokens rotate; no preferred_username in ID tokens.
    preset: "auth0",
    mock: {
      discovery: "oidc",
      issParameter: false,
      rotateRefreshTokens: true,
      paths: {
        token: "/oauth/token",
        device_authorization: "/oauth/device/code",
        device: "/activate",
        revoke: "/oauth/revoke",
        keys: "/.well-known/jwks.json",
      },
      dialect: { idTokenClaims: (mock) => ({ iss: `${mock.issuer}/`, preferred_username: undefined }) },
    },
    setup: (mock) => {
      mock.metadata.issuer = `${mock.issuer}/`;
      mock.metadata.introspection_endpoint = undefined;
    },
    client: publicClient("auth0-native-app"),
    args: (mock) => ["--provider", "auth0", "--issuer", `${mock.issuer}/`],
    user: "alice@example.com",
    device: true,
    refresh: true,
    revoke: true,
  },
  {
    // Inferred from /realms/; Keycloak strips the port of loopback redirects before matching.
    preset: "keycloak",
    mock: {
      path: "/realms/demo",
      discovery: "oidc",
      paths: {
        authorize: "/realms/demo/protocol/openid-connect/auth",
        token: "/realms/demo/protocol/openid-connect/token",
        device_authorization: "/realms/demo/protocol/openid-connect/auth/device",
        device: "/realms/demo/device",
        revoke: "/realms/demo/protocol/openid-connect/revoke",
        introspect: "/realms/demo/protocol/openid-connect/token/introspect",
        userinfo: "/realms/demo/protocol/openid-connect/userinfo",
        keys: "/realms/demo/protocol/openid-connect/certs",
      },
    },
    client: publicClient("kc-cli"),
    args: (mock) => ["--issuer", mock.issuer],
    user: "alice",
    device: true,
    refresh: true,
    revoke: true,
  },
  {
    // Endpoints on the hosted-UI domain; no device flow; the name is in cognito:username.
    preset: "cognito",
    mock: {
      path: "/eu-west-2_AbCdEf123",
      discovery: "oidc",
      issParameter: false,
      paths: {
        authorize: "/oauth2/authorize",
        token: "/oauth2/token",
        revoke: "/oauth2/revoke",
        userinfo: "/oauth2/userInfo",
      },
      dialect: {
        refreshTokenWhen: () => true,
        idTokenClaims: () => ({ "cognito:username": "alice-cognito", preferred_username: undefined }),
      },
    },
    setup: (mock) => {
      mock.metadata.device_authorization_endpoint = undefined;
      mock.metadata.introspection_endpoint = undefined;
      mock.metadata.token_endpoint_auth_methods_supported = ["client_secret_basic", "client_secret_post"];
    },
    client: publicClient("cognito-app-client"),
    args: (mock) => ["--provider", "cognito", "--issuer", mock.issuer],
    user: "alice-cognito",
    device: false,
    refresh: true,
    revoke: true,
  },
  {
    // No expires_in; a refresh token only for the refresh_token scope.
    preset: "salesforce",
    mock: {
      discovery: "oidc",
      issParameter: false,
      paths: {
        authorize: "/services/oauth2/authorize",
        token: "/services/oauth2/token",
        revoke: "/services/oauth2/revoke",
        userinfo: "/services/oauth2/userinfo",
        introspect: "/services/oauth2/introspect",
        keys: "/id/keys",
      },
      dialect: {
        omitExpiresIn: true,
        refreshTokenWhen: (p) => (p.get("scope") ?? "").split(" ").includes("refresh_token"),
        idTokenClaims: () => ({ preferred_username: "alice@acme.my.salesforce.com" }),
      },
    },
    setup: (mock) => {
      mock.metadata.device_authorization_endpoint = undefined;
    },
    client: publicClient("3MVG9salesforce"),
    args: () => ["--provider", "salesforce"],
    user: "alice@acme.my.salesforce.com",
    authorize: { scope: "openid profile refresh_token" },
    device: false,
    refresh: true, // issued and kept; with no expires_in it is not used on a clock (see the README)
    revoke: true,
  },
  {
    // token_access_type=offline for a refresh token; no revocation or device flow in its metadata:
    // revocation is its own API, POST /2/auth/token/revoke with the access token as Bearer.
    preset: "dropbox",
    mock: {
      discovery: "oidc",
      issParameter: false,
      paths: {
        authorize: "/oauth2/authorize",
        token: "/oauth2/token",
        userinfo: "/2/openid/userinfo",
        revoke: "/2/auth/token/revoke",
      },
      dialect: {
        refreshTokenWhen: (p) => p.get("token_access_type") === "offline",
        idTokenClaims: () => ({ preferred_username: undefined }),
      },
    },
    setup: (mock) => {
      for (const key of ["device_authorization_endpoint", "revocation_endpoint", "introspection_endpoint"]) {
        mock.metadata[key] = undefined;
      }
      mock.metadata.grant_types_supported = ["authorization_code"];
      mock.intercept = (record) => {
        if (record.method !== "POST" || record.path !== "/2/auth/token/revoke") return Promise.resolve(undefined);
        const token = (record.headers.authorization ?? "").replace(/^Bearer /, "");
        if (!mock.accessTokens.has(token)) return Promise.resolve(json({ error: "invalid_access_token" }, 401));
        mock.accessTokens.delete(token);
        mock.revoked.push(token);
        return Promise.resolve(json(null, 200));
      };
    },
    client: publicClient("dropbox-app-key"),
    args: () => ["--provider", "dropbox"],
    user: "alice@example.com",
    authorize: { token_access_type: "offline" },
    device: false,
    refresh: true,
    revoke: true,
  },
  {
    // No OpenID: who comes from GET /v1/me; 127.0.0.1 only; revocation at /oauth2/revoke/v1.
    preset: "spotify",
    mock: {
      discovery: "oidc",
      issParameter: false,
      rotateRefreshTokens: true,
      paths: { authorize: "/authorize", token: "/api/token", revoke: "/oauth2/revoke/v1" },
      dialect: { refreshTokenWhen: () => true },
      whoAmI: { path: "/v1/me", body: () => ({ id: "alice.spotify", display_name: "Alice", country: "SE" }) },
    },
    setup: (mock) => {
      for (const key of ["device_authorization_endpoint", "introspection_endpoint", "userinfo_endpoint"]) {
        mock.metadata[key] = undefined;
      }
    },
    client: publicClient("spotify-client-id"),
    args: () => ["--provider", "spotify"],
    user: "alice.spotify",
    authorize: { scope: "user-read-private user-read-email" },
    device: false,
    refresh: true,
    revoke: true,
  },
];

// ── Running a personality ───────────────────────────────────────────────────────────────────────

const HOUR = 3600_000;

function serve(personality: Personality): ServedMock {
  const mock = serveMockIssuer({ user: PERSON, ...personality.mock, clients: [personality.client] });
  personality.setup?.(mock);
  return mock;
}

function cli(personality: Personality, mock: ServedMock, command: string, extra: string[] = []): string[] {
  return [command, ...personality.args(mock), "--client-id", personality.client.id, ...extra];
}

function options(personality: Personality, mock: ServedMock, more: RunOptions = {}): RunOptions {
  return {
    presetBase: new URL(mock.issuer).origin,
    env: personality.client.secret ? { OAUTH_CLIENT_SECRET: personality.client.secret } : {},
    ...more,
  };
}

function lastGrant(mock: ServedMock): string | undefined {
  return mock.calls("token").at(-1)?.form.grant_type;
}

for (const personality of PERSONALITIES) {
  Deno.test(
    `${personality.preset}: browser login names the user, ${personality.refresh ? "refreshes, " : ""}logs out`,
    async () => {
      const mock = serve(personality);
      let result: Run | undefined;
      try {
        const start = Date.now();
        result = await run(
          cli(personality, mock, "login"),
          options(personality, mock, { browser: (url) => scriptedBrowser(url), now: () => start }),
        );
        assertEquals(result.code, EXIT.ok, result.stderr);
        assertStringIncludes(result.stderr, `Logged in as ${personality.user}\n`);
        assertEquals(result.visit?.status, 200, "the browser ends on the success page");
        assertEquals(mock.calls("token").length, 1, "one code exchange");
        assertEquals(lastGrant(mock), "authorization_code");
        const authorize = mock.calls("authorize")[0];
        for (const [key, value] of Object.entries(personality.authorize ?? {})) {
          assertEquals(authorize.query[key], value, `the authorization request's ${key}`);
        }
        assertEquals(authorize.query.code_challenge_method, "S256");
        assertEquals(
          mock.requests.some((r) => r.path.includes("/.well-known/")),
          personality.mock.discovery !== "none",
          "discovery happens exactly when the provider has it",
        );
        assertNoLeaks(result, secretsOf(mock));

        const whoami = await run(cli(personality, mock, "whoami"), options(personality, mock, { home: result.home }));
        assertEquals(whoami.code, EXIT.ok, whoami.stderr);
        assertStringIncludes(whoami.stdout, ` as ${personality.user}\n`);
        assertStringIncludes(whoami.stdout, `  refresh: ${personality.refresh ? "yes" : "no"}`);

        if (personality.refresh && !personality.mock.dialect?.omitExpiresIn) {
          const later = start + 2 * HOUR; // past the access token's hour
          const token = await run(
            cli(personality, mock, "token"),
            options(personality, mock, { home: result.home, now: () => later }),
          );
          assertEquals(token.code, EXIT.ok, token.stderr);
          assertEquals(lastGrant(mock), "refresh_token", "the expired token was refreshed");
          assert(mock.accessTokens.has(token.stdout.trim()), "the refreshed access token is printed");
          assertEquals(token.stderr, "");
        }

        const logout = await run(cli(personality, mock, "logout"), options(personality, mock, { home: result.home }));
        assertEquals(logout.code, EXIT.ok, logout.stderr);
        assertStringIncludes(logout.stderr, "Logged out of ");
        if (personality.revoke) {
          assert(mock.calls("revoke").length > 0, "the tokens were revoked at the server");
          assertEquals(mock.revoked.length, mock.calls("revoke").length);
        } else {
          assertStringIncludes(logout.stderr, "note: The server has no revocation endpoint");
        }
        const after = await run(cli(personality, mock, "whoami"), options(personality, mock, { home: result.home }));
        assertEquals(after.code, EXIT.loginRequired);
      } finally {
        await mock.close();
        if (result) await cleanUp(result);
      }
    },
  );

  if (!personality.device) continue;
  Deno.test(`${personality.preset}: device flow login names the user`, async () => {
    const mock = serve(personality);
    mock.device.pending = 1;
    mock.device.slowDown = 1;
    const waits: number[] = [];
    let result: Run | undefined;
    try {
      result = await run(
        cli(personality, mock, "login", ["--flow", "device"]),
        options(personality, mock, {
          sleep: (ms) => {
            waits.push(ms);
            return Promise.resolve();
          },
        }),
      );
      assertEquals(result.code, EXIT.ok, result.stderr);
      assertStringIncludes(result.stderr, `To sign in, open this address on any device`);
      assertStringIncludes(result.stderr, `Logged in as ${personality.user}\n`);
      assertEquals(mock.calls("device_authorization").length, 1);
      assertEquals(
        mock.calls("token").map((r) => r.form.grant_type),
        Array(3).fill("urn:ietf:params:oauth:grant-type:device_code"),
        "slow_down, then authorization_pending, then the tokens",
      );
      assertEquals(waits, [5000, 10000, 10000], "the interval grows by 5 s after slow_down");
      assertNoLeaks(result, secretsOf(mock));
    } finally {
      await mock.close();
      if (result) await cleanUp(result);
    }
  });
}

// ── The three cases of issue 14, as they failed before ─────────────────────────────────────────

Deno.test("issue 14.1: a device answer naming verification_url and no interval signs in (polls every 5 s)", async () => {
  const mock = serveMockIssuer({ dialect: { verificationUriName: "verification_url" } });
  mock.device.interval = undefined;
  mock.device.pending = 1;
  const waits: number[] = [];
  let result: Run | undefined;
  try {
    result = await run(["login", "--issuer", mock.issuer, "--client-id", "cli-public", "--flow", "device"], {
      sleep: (ms) => {
        waits.push(ms);
        return Promise.resolve();
      },
    });
    assertEquals(result.code, EXIT.ok, result.stderr);
    assertStringIncludes(result.stderr, `\n  ${mock.issuer}/device\n`);
    assertEquals(waits, [5000, 5000]);
  } finally {
    await mock.close();
    if (result) await cleanUp(result);
  }
});

Deno.test("issue 14.2: Entra", async (t) => {
  const entra = PERSONALITIES.find((p) => p.preset === "entra")!;
  await t.step("an ID token whose iss is not the template filled with its tid is refused", async () => {
    const original = entra.mock.dialect!.idTokenClaims!;
    const mock = serveMockIssuer({
      ...entra.mock,
      user: PERSON,
      clients: [entra.client],
      // A token from another tenant than its iss names.
      dialect: {
        ...entra.mock.dialect,
        idTokenClaims: (m) => ({ ...original(m), tid: "0b5e7e44-0000-4000-8000-000000000000" }),
      },
    });
    entra.setup!(mock);
    let result: Run | undefined;
    try {
      result = await run(cli(entra, mock, "login"), options(entra, mock, { browser: (url) => scriptedBrowser(url) }));
      assertEquals(result.code, EXIT.failure);
      assertStringIncludes(result.stderr, 'unexpected JWT "iss" (issuer) claim value');
      assertEquals(await Array.fromAsync(Deno.readDir(`${result.home}/cache`)).catch(() => []), []);
    } finally {
      await mock.close();
      if (result) await cleanUp(result);
    }
  });
  await t.step("the template for a tenant that is not an alias is refused, saying which tenants work", async () => {
    const mock = serveMockIssuer({ ...entra.mock, path: "/contoso.com/v2.0", clients: [entra.client] });
    entra.setup!(mock);
    let result: Run | undefined;
    try {
      result = await run(
        ["login", "--provider", "entra", "--tenant", "contoso.com", "--client-id", entra.client.id],
        options(entra, mock, {}),
      );
      assertEquals(result.code, EXIT.usage);
      assertEquals(
        result.stderr,
        `error: The server names the issuer template "${mock.metadata.issuer}", which is accepted only for the tenants common, organizations, consumers\n` +
          "hint: use --tenant common (or organizations, consumers), or your tenant's GUID\n",
      );
      assertEquals(result.opened, []);
    } finally {
      await mock.close();
      if (result) await cleanUp(result);
    }
  });
  await t.step("a domain-name tenant shows both issuers and the --tenant flag to use", async () => {
    const mock = serveMockIssuer({ ...entra.mock, path: "/contoso.onmicrosoft.com/v2.0", clients: [entra.client] });
    mock.metadata.issuer = `${new URL(mock.issuer).origin}/${TENANT}/v2.0`;
    let result: Run | undefined;
    try {
      result = await run(
        ["login", "--provider", "entra", "--tenant", "contoso.onmicrosoft.com", "--client-id", entra.client.id],
        options(entra, mock, {}),
      );
      assertEquals(result.code, EXIT.usage);
      assertEquals(
        result.stderr,
        `error: Issuer mismatch: asked for "${mock.issuer}", the server says "${mock.metadata.issuer}"\n` +
          `hint: they differ in the path: the tenant "contoso.onmicrosoft.com" is ${TENANT} at the server; use --tenant ${TENANT}\n`,
      );
      assertEquals(result.opened, []);
    } finally {
      await mock.close();
      if (result) await cleanUp(result);
    }
  });
  await t.step("a discovery error shows the server's error and description", async () => {
    const mock = serveMockIssuer({ path: "/nope/v2.0", discovery: "oidc" });
    mock.intercept = (record) =>
      record.path.endsWith("/openid-configuration")
        ? json({
          error: "invalid_tenant",
          error_description: "AADSTS90002: Tenant 'nope' not found. Check to make sure you have the correct tenant ID.",
        }, 400)
        : undefined;
    let result: Run | undefined;
    try {
      result = await run(
        ["login", "--provider", "entra", "--tenant", "nope", "--client-id", "x"],
        { presetBase: new URL(mock.issuer).origin },
      );
      assertEquals(result.code, EXIT.failure);
      assertEquals(
        result.stderr,
        `error: Cannot fetch the server metadata: the server answered "invalid_tenant" (AADSTS90002: Tenant 'nope' not found. Check to make sure you have the correct tenant ID.)\n` +
          `hint: check the issuer "${mock.issuer}" and the tenant\n`,
      );
    } finally {
      await mock.close();
      if (result) await cleanUp(result);
    }
  });
});

Deno.test("issue 19: Google's ID tokens may say iss accounts.google.com or its issuer, and nothing else", async (t) => {
  const google = PERSONALITIES.find((p) => p.preset === "google")!;
  const original = google.mock.dialect!.idTokenClaims!;
  /** A Google login whose ID token says `iss` (given the mock, whose origin stands for https://accounts.google.com). */
  const loginWith = async (iss: (mock: { issuer: string }) => string) => {
    const mock = serveMockIssuer({
      ...google.mock,
      user: PERSON,
      clients: [google.client],
      dialect: { ...google.mock.dialect, idTokenClaims: (m) => ({ ...original(m), iss: iss(m) }) },
    });
    google.setup!(mock);
    try {
      const result = await run(cli(google, mock, "login"), options(google, mock, { browser: scriptedBrowser }));
      const saved = await Array.fromAsync(Deno.readDir(`${result.home}/cache`)).catch(() => []);
      await cleanUp(result);
      return { result, saved };
    } finally {
      await mock.close();
    }
  };
  for (
    const [what, iss] of [["accounts.google.com", () => "accounts.google.com"], [
      "its issuer",
      (m: { issuer: string }) => m.issuer,
    ]] as const
  ) {
    await t.step(`accepted: ${what}`, async () => {
      const { result, saved } = await loginWith(iss);
      assertEquals(result.code, EXIT.ok, result.stderr);
      assertEquals(saved.length, 1);
    });
  }
  const refused = [
    "accounts.google.com.evil.example",
    "https://accounts.google.com.evil.example",
    "xaccounts.google.com",
    "accounts.google.com/",
    "ACCOUNTS.GOOGLE.COM",
    "evil.example",
  ];
  for (const iss of refused) {
    await t.step(`refused: ${iss}`, async () => {
      const { result, saved } = await loginWith(() => iss);
      assertEquals(result.code, EXIT.failure);
      assertStringIncludes(result.stderr, 'unexpected JWT "iss" (issuer) claim value');
      assertEquals(saved, [], "nothing cached");
    });
  }
  await t.step("refused for any other issuer: accounts.google.com is Google's own exception", async () => {
    const mock = serveMockIssuer({ dialect: { idTokenClaims: () => ({ iss: "accounts.google.com" }) } });
    try {
      const result = await run(["login", "--issuer", mock.issuer, "--client-id", "cli-public"], {
        browser: scriptedBrowser,
      });
      await cleanUp(result);
      assertEquals(result.code, EXIT.failure);
      assertStringIncludes(result.stderr, 'unexpected JWT "iss" (issuer) claim value');
    } finally {
      await mock.close();
    }
  });
  await t.step(
    "refused with --provider google and an issuer off Google's hosts (another server's ID tokens)",
    async () => {
      const mock = serveMockIssuer({ dialect: { idTokenClaims: () => ({ iss: "accounts.google.com" }) } });
      try {
        const result = await run(
          ["login", "--provider", "google", "--issuer", mock.issuer, "--client-id", CONFIDENTIAL_CLIENT.id],
          {
            browser: scriptedBrowser,
            presetBase: "https://google.invalid",
            env: { OAUTH_CLIENT_SECRET: CONFIDENTIAL_CLIENT.secret! },
          },
        );
        await cleanUp(result);
        assertEquals(result.code, EXIT.failure, result.stderr);
        assertStringIncludes(result.stderr, 'unexpected JWT "iss" (issuer) claim value');
      } finally {
        await mock.close();
      }
    },
  );
});

Deno.test("issue 14.3: GitHub", async (t) => {
  const github = PERSONALITIES.find((p) => p.preset === "github")!;
  await t.step("a bad code answered with HTTP 200 and an error is reported as that error", async () => {
    const mock = serve(github);
    mock.intercept = (record) =>
      record.path === "/login/oauth/access_token"
        ? json({
          error: "bad_verification_code",
          error_description: "The code passed is incorrect or expired.",
          error_uri: "https://docs.github.com/apps/troubleshooting",
        })
        : undefined;
    let result: Run | undefined;
    try {
      result = await run(cli(github, mock, "login"), options(github, mock, { browser: (url) => scriptedBrowser(url) }));
      assertEquals(result.code, EXIT.failure);
      assertEquals(
        result.stderr.split("\n").filter((line) => line.startsWith("error:")),
        [
          'error: Cannot exchange the authorization code: the server answered "bad_verification_code" (The code passed is incorrect or expired.)',
        ],
      );
      assertStringIncludes(result.visit!.body, "Sign-in failed");
    } finally {
      await mock.close();
      if (result) await cleanUp(result);
    }
  });
  await t.step("logout revokes through GitHub's own API; --verbose shows neither token nor secret", async () => {
    const mock = serve(github);
    let result: Run | undefined;
    try {
      result = await run(cli(github, mock, "login"), options(github, mock, { browser: (url) => scriptedBrowser(url) }));
      assertEquals(result.code, EXIT.ok, result.stderr);
      const secrets = secretsOf(mock);
      const logout = await run(
        cli(github, mock, "logout", ["--verbose"]),
        options(github, mock, { home: result.home }),
      );
      assertEquals(logout.code, EXIT.ok, logout.stderr);
      assertStringIncludes(logout.stderr, "trace: > DELETE http://127.0.0.1:");
      assertStringIncludes(logout.stderr, "trace: < 204 ");
      assertEquals(mock.revoked.length, 1);
      assertEquals(mock.accessTokens.size, 0, "the access token is revoked at GitHub");
      assertNoLeaks(logout, secrets);
    } finally {
      await mock.close();
      if (result) await cleanUp(result);
    }
  });
  await t.step("a form-encoded answer with comma scopes is read; the scopes show space-separated", async () => {
    const mock = serveMockIssuer({
      ...github.mock,
      user: PERSON,
      clients: [github.client],
      dialect: { ...github.mock.dialect, formEncoded: true },
    });
    let result: Run | undefined;
    try {
      result = await run(cli(github, mock, "login"), options(github, mock, { browser: (url) => scriptedBrowser(url) }));
      assertEquals(result.code, EXIT.ok, result.stderr);
      assertEquals(mock.calls("access_token").length, 0); // paths, not names
      const whoami = await run(cli(github, mock, "whoami"), options(github, mock, { home: result.home }));
      assertStringIncludes(whoami.stdout, "  scopes:  repo gist\n");
      assertStringIncludes(whoami.stdout, "Logged in to");
      assertStringIncludes(whoami.stdout, " as octocat\n");
      const token = await run(cli(github, mock, "token"), options(github, mock, { home: result.home }));
      assertEquals(token.code, EXIT.ok);
      assert(mock.accessTokens.has(token.stdout.trim()));
      // The who-am-I request carried the token as a Bearer.
      const me = mock.requests.find((r) => r.path === "/user")!;
      assertMatch(me.headers.authorization, /^Bearer /);
    } finally {
      await mock.close();
      if (result) await cleanUp(result);
    }
  });
});

Deno.test("a refresh answered with HTTP 200 and invalid_grant ends the session, as a 400 would", async () => {
  const mock = serveMockIssuer({ dialect: { status200Errors: true } });
  let result: Run | undefined;
  try {
    const start = Date.now();
    result = await run(["login", "--issuer", mock.issuer, "--client-id", "cli-public"], {
      browser: (url) => scriptedBrowser(url),
      now: () => start,
    });
    assertEquals(result.code, EXIT.ok, result.stderr);
    mock.refreshTokens.clear(); // the grant was revoked at the server
    const token = await run(["token", "--issuer", mock.issuer, "--client-id", "cli-public"], {
      home: result.home,
      now: () => start + 2 * HOUR,
    });
    assertEquals(token.code, EXIT.loginRequired);
    assertEquals(token.stdout, "");
    assertStringIncludes(
      token.stderr,
      'warning: The session has ended at the server (Cannot refresh the access token: the server answered "invalid_grant" (The refresh token is invalid)); the cached tokens were removed\n',
    );
    assertEquals(lastGrant(mock), "refresh_token");
  } finally {
    await mock.close();
    if (result) await cleanUp(result);
  }
});

// ── Manual endpoints ────────────────────────────────────────────────────────────────────────────

Deno.test("manual endpoints: a login with no discovery at all, keyed by the token endpoint", async () => {
  const mock = serveMockIssuer({
    discovery: "none",
    dialect: { tokenType: null, omitScope: true },
    whoAmI: { path: "/api/me", body: (user) => ({ handle: "al", id: 7, email: user.email }) },
  });
  const base = mock.issuer;
  const args = [
    "--authorization-endpoint",
    `${base}/authorize`,
    "--token-endpoint",
    `${base}/token`,
    "--userinfo-endpoint",
    `${base}/api/me`,
    "--revocation-endpoint",
    `${base}/revoke`,
    "--user-claim",
    "handle",
    "--scope",
    "openid read offline_access",
    "--client-id",
    "cli-public",
  ];
  let result: Run | undefined;
  try {
    result = await run(["login", ...args], { browser: (url) => scriptedBrowser(url) });
    assertEquals(result.code, EXIT.ok, result.stderr);
    assertEquals(
      result.stderr,
      `Opening your browser to sign in at ${new URL(base).host} ...\n` +
        `If it does not open, visit: ${result.opened[0]}\n${WAITING_LINE}Logged in as al\n`,
      "no warning: a missing scope is the one asked for",
    );
    assertEquals(mock.requests.filter((r) => r.path.includes(".well-known")), [], "no discovery request");
    assertEquals(mock.calls("authorize")[0].query.nonce, undefined, "no nonce: no ID token can be checked");
    const files = await Array.fromAsync(Deno.readDir(`${result.home}/cache`), (e) => e.name);
    assertEquals(files.filter((f) => f.endsWith(".json")).length, 1);
    const entry = JSON.parse(await Deno.readTextFile(`${result.home}/cache/${files.find((f) => f.endsWith(".json"))}`));
    assertEquals(entry.issuer, `${base}/token`, "the token endpoint keys the cache entry");
    assertEquals(entry.tokenType, "bearer", "a missing token_type is Bearer (kept lower-cased, as oauth4webapi does)");
    assertEquals(entry.subject, "7");
    assertEquals(entry.scope, undefined);
    assertEquals(entry.idToken, undefined);

    const doctor = await run(["doctor", ...args], { home: result.home });
    assertStringIncludes(doctor.stdout, "issuer: none (endpoints given by hand; the token endpoint keys the cache)");
    assertStringIncludes(doctor.stdout, "discovery  none: the endpoints were given by hand");

    const logout = await run(["logout", ...args], { home: result.home });
    assertEquals(logout.code, EXIT.ok, logout.stderr);
    assertEquals(mock.calls("revoke").length, 2, "refresh and access token revoked");
  } finally {
    await mock.close();
    if (result) await cleanUp(result);
  }
});

Deno.test("manual endpoints: given with an issuer, each overrides the discovered one", async () => {
  const mock = serveMockIssuer({ paths: { device_authorization: "/custom/device" } });
  mock.metadata.device_authorization_endpoint = undefined;
  let result: Run | undefined;
  try {
    result = await run([
      "login",
      "--issuer",
      mock.issuer,
      "--client-id",
      "cli-public",
      "--flow",
      "device",
      "--device-authorization-endpoint",
      `${mock.issuer}/custom/device`,
    ], { sleep: () => Promise.resolve() });
    assertEquals(result.code, EXIT.ok, result.stderr);
    assertEquals(mock.requests.filter((r) => r.path === "/custom/device").length, 1);
  } finally {
    await mock.close();
    if (result) await cleanUp(result);
  }
});

Deno.test("manual endpoints: the rules for discovered endpoints hold", async (t) => {
  await t.step("https unless loopback", async () => {
    const result = await run([
      "login",
      "--token-endpoint",
      "http://oauth.example/token",
      "--authorization-endpoint",
      "https://oauth.example/authorize",
      "--client-id",
      "x",
    ]);
    assertEquals(result.code, EXIT.usage);
    assertEquals(
      result.stderr,
      'error: The --token-endpoint "http://oauth.example/token" is not an https URL\n' +
        "hint: plain http is only allowed for loopback development servers (127.0.0.1, [::1], localhost)\n",
    );
    await cleanUp(result);
  });
  await t.step("no redirects followed", async () => {
    const mock = serveMockIssuer({ discovery: "none" });
    mock.intercept = (record) =>
      record.path === "/token"
        ? new Response(null, { status: 302, headers: { location: "https://evil.example/" } })
        : undefined;
    let result: Run | undefined;
    try {
      result = await run([
        "login",
        "--token-endpoint",
        `${mock.issuer}/token`,
        "--authorization-endpoint",
        `${mock.issuer}/authorize`,
        "--client-id",
        "cli-public",
      ], { browser: (url) => scriptedBrowser(url) });
      assertEquals(result.code, EXIT.failure);
      assertStringIncludes(result.stderr, "with a redirect (HTTP 302), which is not followed");
    } finally {
      await mock.close();
      if (result) await cleanUp(result);
    }
  });
  await t.step("without an authorization endpoint the browser flow says what to pass", async () => {
    const mock = serveMockIssuer({ discovery: "none" });
    let result: Run | undefined;
    try {
      result = await run(["login", "--token-endpoint", `${mock.issuer}/token`, "--client-id", "cli-public"]);
      assertEquals(result.code, EXIT.usage);
      assertEquals(
        result.stderr,
        "error: No authorization endpoint is configured\n" +
          "hint: pass --authorization-endpoint URL (or --device-authorization-endpoint URL for the device flow)\n",
      );
      assertEquals(mock.requests, []);
    } finally {
      await mock.close();
      if (result) await cleanUp(result);
    }
  });
});

// ── Presets: choice, inference, rules ───────────────────────────────────────────────────────────

Deno.test("inferProvider() names a preset only for unambiguous issuers", () => {
  const cases: [string, string | undefined][] = [
    ["https://accounts.google.com", "google"],
    ["https://login.microsoftonline.com/common/v2.0", "entra"],
    ["https://dev-123456.okta.com/oauth2/default", "okta"],
    ["https://acme.us.auth0.com/", "auth0"],
    ["https://sso.example.com/realms/dev", "keycloak"],
    ["https://sso.example.com/auth/realms/dev", "keycloak"],
    ["https://cognito-idp.eu-west-2.amazonaws.com/eu-west-2_AbC", "cognito"],
    ["https://gitlab.com", "gitlab"],
    ["https://gitlab.example.com", undefined],
    ["https://evil-okta.com.example.net", undefined],
    ["https://example.com/realms/dev/extra", undefined],
  ];
  for (const [issuer, provider] of cases) assertEquals(inferProvider(issuer)?.provider, provider, issuer);
});

Deno.test("doctor shows the preset in force and why", async () => {
  const keycloak = serve(PERSONALITIES.find((p) => p.preset === "keycloak")!);
  try {
    const inferred = await run(["doctor", "--issuer", keycloak.issuer, "--client-id", "kc-cli"]);
    assertStringIncludes(inferred.stdout, "provider preset: keycloak (inferred from the issuer path /realms/…)");
    await cleanUp(inferred);
    const named = await run(["doctor", "--issuer", keycloak.issuer, "--client-id", "kc-cli"], {
      env: { OAUTH_PROVIDER: "okta" },
    });
    assertStringIncludes(named.stdout, "provider preset: okta (from environment)");
    const preset = await run(["doctor", "--provider", "google", "--client-id", "x"], {
      presetBase: new URL(keycloak.issuer).origin,
      env: { OAUTH_CLIENT_SECRET: "GOCSPX-desktop-not-so-secret" },
    });
    assertStringIncludes(preset.stdout, `issuer: ${new URL(keycloak.issuer).origin} (from the google preset)`);
    assertStringIncludes(preset.stdout, "provider preset: google (from flag)");
    await cleanUp(preset);
    const entra = PERSONALITIES.find((p) => p.preset === "entra")!;
    const entraMock = serve(entra);
    const template = await run(cli(entra, entraMock, "doctor"), options(entra, entraMock));
    await entraMock.close();
    assertStringIncludes(
      template.stdout,
      `ok    discovery  ${
        new URL(entraMock.issuer).origin
      }/{tenantid}/v2.0 answered: each ID token's iss must be this with its own tid\n`,
    );
    assertStringIncludes(template.stdout, "provider preset: entra (from flag)");
    await cleanUp(template);
    await cleanUp(named);
    const plain = serveMockIssuer();
    const none = await run(["doctor", "--issuer", plain.issuer, "--client-id", "kc-cli"]);
    await plain.close();
    assertStringIncludes(none.stdout, "provider preset: none\n");
    await cleanUp(none);
  } finally {
    await keycloak.close();
  }
});

Deno.test("presets: usage and configuration errors", async (t) => {
  await t.step("an unknown preset lists the known ones", async () => {
    const result = await run(["login", "--provider", "myspace", "--client-id", "x"]);
    assertEquals(result.code, EXIT.usage);
    assertStringIncludes(result.stderr, 'error: The provider "myspace" has no preset\n');
    assertStringIncludes(result.stderr, "hint: use one of github, gitlab, google, entra, okta, auth0,");
    await cleanUp(result);
  });
  await t.step("a preset where each customer has an issuer asks for it", async () => {
    const result = await run(["login", "--provider", "okta", "--client-id", "x"]);
    assertEquals(result.code, EXIT.usage);
    assertEquals(
      result.stderr,
      "error: The okta preset needs the issuer of your okta account\n" +
        "hint: pass --issuer https://YOUR-ORG.okta.com/oauth2/default\n",
    );
    await cleanUp(result);
  });
  await t.step("Google without its client secret says so before any request", async () => {
    const result = await run(["login", "--provider", "google", "--client-id", "x.apps.googleusercontent.com"]);
    assertEquals(result.code, EXIT.usage);
    assertEquals(
      result.stderr,
      "error: The google preset needs the client secret: Google's token endpoint demands the client secret even with PKCE (a Desktop app's is not confidential)\n" +
        "hint: set OAUTH_CLIENT_SECRET to the secret shown with the client id\n",
    );
    await cleanUp(result);
  });
  await t.step("--tenant without the entra preset is a usage error", async () => {
    const result = await run([
      "login",
      "--provider",
      "okta",
      "--issuer",
      "https://a.okta.com",
      "--tenant",
      "common",
      "--client-id",
      "x",
    ]);
    assertEquals(result.code, EXIT.usage);
    assertEquals(
      result.stderr,
      "error: The tenant applies only to the entra preset\nhint: add --provider entra, or leave out --tenant\n",
    );
    await cleanUp(result);
  });
  await t.step("Spotify refuses a localhost redirect", async () => {
    const result = await run([
      "login",
      "--provider",
      "spotify",
      "--client-id",
      "x",
      "--redirect-uri",
      "http://localhost:8888/callback",
    ]);
    assertEquals(result.code, EXIT.usage);
    assertEquals(
      result.stderr,
      'error: The spotify preset refuses "localhost" in a redirect URI\n' +
        "hint: register and use http://127.0.0.1:PORT/callback instead\n",
    );
    await cleanUp(result);
  });
  await t.step("a preset's parameters never override the person's", () => {
    const config = resolveConfig(
      {
        command: "login",
        named: true,
        flags: { provider: "dropbox", "client-id": "x", param: ["token_access_type=online"] },
      },
      () => undefined,
    );
    assertEquals(config.params, [["token_access_type", "online"]]);
    assertEquals(config.issuer, "https://www.dropbox.com");
    assertEquals(config.provider, "dropbox");
  });
});

// ── Dialects, one rule at a time ────────────────────────────────────────────────────────────────

Deno.test("normaliseAnswer() reads each dialect as RFC JSON", () => {
  const encode = (text: string) => new TextEncoder().encode(text);
  const read = (status: number, type: string, body: string, options = {}) => {
    const answer = normaliseAnswer(status, type, encode(body), options);
    return answer && { status: answer.status, body: JSON.parse(new TextDecoder().decode(answer.body)) };
  };
  assertEquals(read(200, "application/json", '{"error":"authorization_pending"}'), {
    status: 400,
    body: { error: "authorization_pending" },
  });
  assertEquals(read(200, "application/x-www-form-urlencoded", "access_token=a&token_type=bearer&scope=repo%2Cgist"), {
    status: 200,
    body: { access_token: "a", token_type: "bearer", scope: "repo gist" },
  });
  assertEquals(read(200, "application/json", '{"access_token":"a"}'), {
    status: 200,
    body: { access_token: "a", token_type: "Bearer" },
  });
  assertEquals(
    read(
      200,
      "application/json",
      '{"device_code":"d","user_code":"u","verification_url":"https://x/d","expires_in":9}',
    ),
    {
      status: 200,
      body: {
        device_code: "d",
        user_code: "u",
        verification_url: "https://x/d",
        verification_uri: "https://x/d",
        expires_in: 9,
      },
    },
  );
  assertEquals(
    read(200, "application/json", '{"access_token":"a","token_type":"Bearer","id_token":"x"}', { dropIdToken: true }),
    {
      status: 200,
      body: { access_token: "a", token_type: "Bearer" },
    },
  );
  assertEquals(read(200, "application/json", '{"access_token":"a","token_type":"Bearer","scope":"a b"}'), undefined);
  assertEquals(read(200, "text/html", "<html>"), undefined);
  assertEquals(read(400, "application/json", '{"error":"invalid_grant"}'), undefined);
});

Deno.test("issuerDifference() says what differs", () => {
  assertEquals(issuerDifference("https://a.example/x", "https://a.example/x/"), "they differ by a trailing slash");
  assertEquals(issuerDifference("https://a.example/x", "http://a.example/x"), "they differ in the scheme");
  assertEquals(
    issuerDifference("https://a.example/x", "https://b.example:8443/x"),
    "they differ in the host and the port",
  );
  assertEquals(issuerDifference("https://a.example/x", "https://a.example/y"), "they differ in the path");
});
