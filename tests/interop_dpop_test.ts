/**
 * DPoP (RFC 9449), private_key_jwt / client_secret_jwt (RFC 7523) and resource indicators (RFC 8707)
 * against the real OpenID provider of the interop suite (oidc-provider 8 under Node), started by
 * these tests with `--dpop` (server nonces required everywhere) and `--resources`. login.ts runs as
 * a subprocess, as a person runs it, with the interop suite's scripted browser.
 *
 * Needs tests/interop/prepare.sh (npm ci); without it every test skips with a printed reason.
 */
import { interopSuite, type Running, startProvider, withRunning } from "./_interop.ts";
import { fileURLToPath } from "node:url";
import { assert, assertEquals, assertMatch, assertStringIncludes } from "./assert.ts";

const path = (relative: string) => fileURLToPath(new URL(relative, import.meta.url));
const LOGIN = path("../login.ts");
const CONFIG = path("../deno.json");
const BROWSER = path("./interop/browser.mjs");
const PERMISSIONS = ["--allow-net", "--allow-env", "--allow-read", "--allow-write", "--allow-run"];
const TOOL_MS = 30_000;

const interop = interopSuite("interop_dpop_test.ts");

// ── The provider ────────────────────────────────────────────────────────────────────────────────

type Provider = Running<ProviderInfo>;

interface ProviderInfo {
  issuer: string;
  account: { sub: string; preferred_username: string };
  jwtClients: {
    dpop: { id: string };
    privateKeyJwt: { id: string; jwk: JsonWebKey & { kid: string } };
    clientSecretJwt: { id: string; secret: string };
  };
  clients: { public: { id: string }; confidential: { id: string; secret: string } };
}

function withProvider(args: string[], fn: (provider: Provider, work: string) => Promise<void>): Promise<void> {
  return withRunning(() => startProvider<ProviderInfo>(args), "oauth-login-interop-dpop-", fn);
}

// ── The tool ────────────────────────────────────────────────────────────────────────────────────

interface ToolRun {
  code: number;
  stdout: string;
  stderr: string;
}

async function tool(provider: Provider, work: string, args: string[], env: Record<string, string> = {}) {
  const base: Record<string, string> = {};
  for (const [name, value] of Object.entries(Deno.env.toObject())) {
    if (!/^(OAUTH_|INTEROP_|BROWSER$)/.test(name)) base[name] = value;
  }
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--config", CONFIG, ...PERMISSIONS, LOGIN, ...args],
    cwd: work,
    env: {
      ...base,
      NO_COLOR: "1",
      OAUTH_LOGIN_CACHE: `${work}/cache`,
      OAUTH_TOKEN_STORAGE: "file", // the tests read the entry's key and tokens from its file
      BROWSER: `node ${BROWSER}`,
      INTEROP_LOGIN: provider.account.sub,
      INTEROP_DECISION: "approve",
      INTEROP_BROWSER_OUT: `${work}/page.json`,
      ...env,
    },
    clearEnv: true,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const kill = setTimeout(() => child.kill("SIGKILL"), TOOL_MS);
  const output = await child.output();
  clearTimeout(kill);
  const decoder = new TextDecoder();
  // Prose on stderr is wrapped at 80 columns (continuation lines indented): the tests read it unwrapped.
  const stderr = decoder.decode(output.stderr).replace(/\n +/g, " ");
  return { code: output.code, stdout: decoder.decode(output.stdout), stderr };
}

function as(provider: Provider, clientId: string, ...extra: string[]): string[] {
  return ["--issuer", provider.issuer, "--client-id", clientId, ...extra];
}

/** A browser login that asks for a refresh token (oidc-provider gives one with offline_access and prompt=consent). */
function login(provider: Provider, work: string, args: string[], env?: Record<string, string>): Promise<ToolRun> {
  return tool(provider, work, [
    "login",
    ...args,
    "--scope",
    "openid profile offline_access",
    "--prompt",
    "consent",
    "--flow",
    "browser",
    "--timeout",
    "20",
  ], env);
}

async function entry(work: string): Promise<Record<string, unknown> & { file: string }> {
  const files = [...Deno.readDirSync(`${work}/cache`)].filter((e) => e.name.endsWith(".json"));
  assertEquals(files.length, 1, "one cache entry");
  const file = `${work}/cache/${files[0].name}`;
  return { ...JSON.parse(await Deno.readTextFile(file)), file };
}

/** The tool's args for `token`/`fetch` with the same key as the login (scope and issuer, client). */
function same(provider: Provider, clientId: string, ...extra: string[]): string[] {
  return [...as(provider, clientId), "--scope", "openid profile offline_access", ...extra];
}

function secretsIn(run: ToolRun, secrets: string[]): void {
  for (const secret of secrets.filter((s) => s.length >= 8)) {
    assert(!run.stderr.includes(secret.slice(0, 12)), `a secret (${secret.slice(0, 4)}…) reached stderr`);
    assert(!run.stdout.includes(secret.slice(0, 12)), `a secret (${secret.slice(0, 4)}…) reached stdout`);
  }
}

// ── DPoP ────────────────────────────────────────────────────────────────────────────────────────

interop(
  "DPoP against oidc-provider with nonces required: login, a refresh with the same key, UserInfo through fetch",
  async () => {
    await withProvider(["--dpop", "--access-token-ttl", "2"], async (provider, work) => {
      const client = provider.clients.public.id;
      const signedIn = await login(provider, work, as(provider, client, "--dpop", "--json"));
      assertEquals(signedIn.code, 0, signedIn.stderr);
      assertStringIncludes(signedIn.stderr, `Logged in as ${provider.account.preferred_username}\n`);
      const json = JSON.parse(signedIn.stdout);
      assertEquals(json.token_type, "DPoP");
      const first = await entry(work);
      const key = first.dpopKey as JsonWebKey;
      assertEquals(typeof key.d, "string");
      assertEquals(
        Object.keys(first.dpopNonces as object),
        [provider.issuer],
        "the token endpoint's nonce is remembered",
      );
      assertEquals((await Deno.stat(first.file)).mode! & 0o777, 0o600);

      // The access token lives 2 s: wait it out, then `token` refreshes with the key from the cache.
      await new Promise((resolve) => setTimeout(resolve, 2_100));
      const refreshed = await tool(provider, work, ["token", ...same(provider, client), "--format", "json"]);
      assertEquals(refreshed.code, 0, refreshed.stderr);
      const token = JSON.parse(refreshed.stdout);
      assertEquals(token.token_type, "DPoP");
      assert(token.access_token !== json.access_token, "a new access token");
      const second = await entry(work);
      assertEquals(second.dpopKey, key, "the same key");
      assert(second.refreshToken !== first.refreshToken, "the rotated refresh token was kept");

      // UserInfo is a real DPoP resource: oidc-provider checks the proof, its ath, the key and a nonce.
      const me = await tool(provider, work, ["fetch", ...same(provider, client), "--include", `${provider.issuer}/me`]);
      assertEquals(me.code, 0, me.stderr);
      assertEquals(JSON.parse(me.stdout).sub, provider.account.sub);
      assertMatch(me.stderr, /^HTTP 200 OK\n/);
      secretsIn(me, [String(second.accessToken), String(second.refreshToken), key.d!]);

      // The same token as Bearer is refused by the provider.
      const bearer = await fetch(`${provider.issuer}/me`, {
        headers: { authorization: `Bearer ${token.access_token}` },
      });
      await bearer.body?.cancel();
      assertEquals(bearer.status, 401);

      // `token --format headers` for curl: the provider accepts the two lines as they are, once
      // (a nonce may be asked for first, as curl users would see).
      const headers = await tool(provider, work, [
        "token",
        ...same(provider, client),
        "--format",
        "headers",
        "--url",
        `${provider.issuer}/me`,
      ]);
      assertEquals(headers.code, 0, headers.stderr);
      const [authorization, proof] = headers.stdout.trim().split("\n").map((l) => l.slice(l.indexOf(": ") + 2));
      assertMatch(authorization, /^DPoP /);
      const curl = await fetch(`${provider.issuer}/me`, { headers: { authorization, dpop: proof } });
      assertEquals(curl.status, 200, await curl.text());

      // logout revokes with DPoP proofs, which the provider accepts; the token is dead afterwards.
      const out = await tool(provider, work, ["logout", ...same(provider, client)]);
      assertEquals(out.code, 0, out.stderr);
      assertStringIncludes(out.stderr, "Logged out of");
      const after = await fetch(`${provider.issuer}/me`, { headers: { authorization, dpop: proof } });
      await after.body?.cancel();
      assertEquals(after.status, 401);
    });
  },
);

interop(
  "DPoP: a refresh signed with another key is refused by oidc-provider (the refresh token is bound)",
  async () => {
    await withProvider(["--dpop", "--access-token-ttl", "1"], async (provider, work) => {
      const client = provider.clients.public.id;
      const signedIn = await login(provider, work, as(provider, client, "--dpop"));
      assertEquals(signedIn.code, 0, signedIn.stderr);
      const { file, ...cached } = await entry(work);
      const other = await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, ["sign", "verify"]);
      const jwk = { ...await crypto.subtle.exportKey("jwk", other.privateKey), alg: "ES256" };
      await Deno.writeTextFile(file, JSON.stringify({ ...cached, dpopKey: jwk }), { mode: 0o600 });
      await new Promise((resolve) => setTimeout(resolve, 1_100));
      const refused = await tool(provider, work, ["token", ...same(provider, client)]);
      assertEquals(refused.code, 4, refused.stderr);
      assertEquals(refused.stdout, "");
      assertStringIncludes(refused.stderr, 'Cannot refresh the access token: the server answered "invalid_grant"');
      secretsIn(refused, [jwk.d!, String(cached.refreshToken)]);
    });
  },
);

interop("DPoP: a client registered with dpop_bound_access_tokens needs --dpop, and works with it", async () => {
  await withProvider(["--dpop"], async (provider, work) => {
    const client = provider.jwtClients.dpop.id;
    const without = await login(provider, work, as(provider, client));
    assertEquals(without.code, 1, without.stderr);
    assertStringIncludes(
      without.stderr,
      'error: Cannot exchange the authorization code: the server answered "invalid_grant" (grant request is invalid)\n' +
        "hint: run the login again; if this client requires DPoP-bound tokens, pass --dpop (or set OAUTH_DPOP=1)\n",
    );
    const withDpop = await login(provider, work, as(provider, client), { OAUTH_DPOP: "1" });
    assertEquals(withDpop.code, 0, withDpop.stderr);
    assertEquals((await entry(work)).tokenType, "DPoP");
  });
});

// ── JWT client authentication ───────────────────────────────────────────────────────────────────

interop(
  "private_key_jwt: a JWK or PEM key file signs in to oidc-provider; a wrong key is refused clearly",
  async () => {
    await withProvider([], async (provider, work) => {
      const { id, jwk } = provider.jwtClients.privateKeyJwt;
      const keyPath = `${work}/client.jwk`;
      await Deno.writeTextFile(keyPath, JSON.stringify(jwk), { mode: 0o600 });
      const ok = await login(provider, work, as(provider, id, "--client-key", keyPath, "--verbose"));
      assertEquals(ok.code, 0, ok.stderr);
      assertStringIncludes(ok.stderr, `Logged in as ${provider.account.preferred_username}\n`);
      secretsIn(ok, [jwk.d!]);
      const cached = await entry(work);
      assertEquals(cached.authMethod, "private_key_jwt");

      // The same key as PKCS#8 PEM, through OAUTH_CLIENT_KEY, refreshing (a token request of its own).
      const key = await crypto.subtle.importKey(
        "jwk",
        { ...jwk, kid: undefined, alg: undefined } as JsonWebKey,
        {
          name: "ECDSA",
          namedCurve: "P-256",
        },
        true,
        ["sign"],
      );
      const der = new Uint8Array(await crypto.subtle.exportKey("pkcs8", key));
      const pem = `-----BEGIN PRIVATE KEY-----\n${btoa(String.fromCharCode(...der))}\n-----END PRIVATE KEY-----\n`;
      await Deno.writeTextFile(`${work}/client.pem`, pem, { mode: 0o600 });
      // The cached access token is made to look expired, so `token` refreshes (a token request of its own).
      const { file, ...stale } = await entry(work);
      await Deno.writeTextFile(file, JSON.stringify({ ...stale, expiresAt: Date.now() - 1_000 }), { mode: 0o600 });
      const refreshed = await tool(provider, work, ["token", ...same(provider, id)], {
        OAUTH_CLIENT_KEY: `${work}/client.pem`,
      });
      assertEquals(refreshed.code, 0, refreshed.stderr);
      assert((await entry(work)).accessToken !== cached.accessToken, "refreshed with the PEM key");

      // Another key: the provider says invalid_client, and the tool says what to check.
      const wrong = await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, ["sign", "verify"]);
      const wrongJwk = { ...await crypto.subtle.exportKey("jwk", wrong.privateKey), kid: "cli-1" };
      await Deno.writeTextFile(`${work}/wrong.jwk`, JSON.stringify(wrongJwk), { mode: 0o600 });
      await Deno.remove(`${work}/cache`, { recursive: true });
      const refused = await login(provider, work, as(provider, id, "--client-key", `${work}/wrong.jwk`));
      // oidc-provider offers PAR, so the wrong key is refused there, before the browser opens (exit 2).
      assertEquals(refused.code, 2, refused.stderr);
      assertStringIncludes(
        refused.stderr,
        'error: The server rejected the sign-in request: it answered "invalid_client" (client authentication failed)',
      );
      assertStringIncludes(
        refused.stderr,
        `hint: a client assertion signed with the key from --client-key was sent (private_key_jwt): check that its public half is registered for the client "${provider.jwtClients.privateKeyJwt.id}" (and its kid), and --assertion-audience\n`,
      );
      secretsIn(refused, [wrongJwk.d!, jwk.d!]);
    });
  },
);

interop("client_secret_jwt: an HS256 assertion signs in to oidc-provider; a wrong secret is refused", async () => {
  await withProvider([], async (provider, work) => {
    const { id, secret } = provider.jwtClients.clientSecretJwt;
    const ok = await login(provider, work, as(provider, id, "--client-auth", "client_secret_jwt"), {
      OAUTH_CLIENT_SECRET: secret,
    });
    assertEquals(ok.code, 0, ok.stderr);
    secretsIn(ok, [secret]);
    await Deno.remove(`${work}/cache`, { recursive: true });
    const wrong = await login(provider, work, as(provider, id, "--client-auth", "client_secret_jwt"), {
      OAUTH_CLIENT_SECRET: "not-the-secret-0123456789abcdef0123456789",
    });
    assertEquals(wrong.code, 2, wrong.stderr); // refused at the PAR endpoint, before the browser opens
    assertStringIncludes(wrong.stderr, '"invalid_client"');
    assertStringIncludes(
      wrong.stderr,
      `hint: a client assertion signed with the client secret from OAUTH_CLIENT_SECRET in the environment was sent (client_secret_jwt): check that secret, and that the client "${id}" is registered for client_secret_jwt\n`,
    );
  });
});

interop("private_key_jwt with DPoP: both at once against oidc-provider with nonces", async () => {
  await withProvider(["--dpop"], async (provider, work) => {
    const { id, jwk } = provider.jwtClients.privateKeyJwt;
    await Deno.writeTextFile(`${work}/client.jwk`, JSON.stringify(jwk), { mode: 0o600 });
    const run = await login(provider, work, as(provider, id, "--client-key", `${work}/client.jwk`, "--dpop"));
    assertEquals(run.code, 0, run.stderr);
    const cached = await entry(work);
    assertEquals([cached.tokenType, cached.authMethod], ["DPoP", "private_key_jwt"]);
    const me = await tool(provider, work, ["fetch", ...same(provider, id), `${provider.issuer}/me`], {
      OAUTH_CLIENT_KEY: `${work}/client.jwk`,
    });
    assertEquals(me.code, 0, me.stderr);
    assertEquals(JSON.parse(me.stdout).sub, provider.account.sub);
  });
});

// ── Resource indicators (RFC 8707) ──────────────────────────────────────────────────────────────

function audience(jwt: string): unknown {
  const payload = jwt.split(".")[1];
  return JSON.parse(atob(payload.replace(/-/g, "+").replace(/_/g, "/"))).aud;
}

interop(
  "--resource twice: the token is for the first API; token --resource for the second refreshes with that resource",
  async () => {
    await withProvider(["--resources"], async (provider, work) => {
      const client = provider.clients.public.id;
      const [one, two] = ["https://api-one.example/", "https://api-two.example/"];
      const both = ["--resource", one, "--resource", two];
      const signedIn = await login(provider, work, [...as(provider, client), ...both, "--json"]);
      assertEquals(signedIn.code, 0, signedIn.stderr);
      const first = JSON.parse(signedIn.stdout).access_token;
      assertEquals(audience(first), one, "the login's access token is for the first resource");

      const forTwo = await tool(provider, work, ["token", ...same(provider, client, "--resource", two)]);
      assertEquals(forTwo.code, 0, forTwo.stderr);
      assertEquals(audience(forTwo.stdout.trim()), two, "a refresh with resource=two gave a token for it");
      const again = await tool(provider, work, ["token", ...same(provider, client, "--resource", two)]);
      assertEquals(again.stdout, forTwo.stdout, "cached: no second refresh");
      const forOne = await tool(provider, work, ["token", ...same(provider, client, ...both)]);
      assertEquals(audience(forOne.stdout.trim()), one, "the entry's own token is still for the first");

      // An API the login did not ask for is another cache entry: nobody is logged in for it.
      const other = await tool(provider, work, [
        "token",
        ...same(provider, client, "--resource", "https://api-three.example/"),
      ]);
      assertEquals(other.code, 4, other.stderr);
    });
  },
);
